// Tests of the provider simulators themselves (plain fetch, no gateway), so the e2e suite's
// fixtures are known to be right: `node --test tests/sim/`.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import {
  startSim,
  CLIENT_KEY,
  embeddingFor,
  embeddingToBase64,
  embeddingFromBase64,
  waitUntil,
} from './openai-sim.mjs';
import { parseSSE, readSSE } from './sse.mjs';

const T = { timeout: 10_000 };
const OA_KEY = 'sk-sim-test-openai-0123456789abcdef';
const AZ_KEY = 'azsimtestkey0123456789abcdef';

function post(url, body, headers = {}) {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

const chatBody = (extra = {}) => ({
  model: 'gpt-4o',
  messages: [
    { role: 'system', content: 'You are terse.' },
    { role: 'user', content: 'hello brave new world' },
  ],
  ...extra,
});

const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};

function joinContent(events) {
  let s = '';
  for (const e of events) {
    if (e.data === '[DONE]') continue;
    const j = JSON.parse(e.data);
    for (const c of j.choices || []) if (typeof c.delta?.content === 'string') s += c.delta.content;
  }
  return s;
}

function reassembleTools(events) {
  const calls = [];
  for (const e of events) {
    if (e.data === '[DONE]') continue;
    for (const c of JSON.parse(e.data).choices || []) {
      for (const tc of c.delta?.tool_calls || []) {
        const cur = (calls[tc.index] ||= { id: '', name: '', arguments: '' });
        if (tc.id) cur.id = tc.id;
        if (tc.function?.name) cur.name += tc.function.name;
        if (tc.function?.arguments) cur.arguments += tc.function.arguments;
      }
    }
  }
  return calls;
}

describe('openai flavor', () => {
  let sim;
  before(async () => {
    sim = await startSim({ flavor: 'openai', name: 'oa', apiKey: OA_KEY, models: ['gpt-4o', 'text-embedding-3-small'] });
  });
  after(() => sim.close());

  test('url shape', T, () => {
    assert.match(sim.url, /^http:\/\/127\.0\.0\.1:\d+\/v1$/);
    assert.ok(sim.port > 0);
  });

  test('non-stream chat echoes the last user text with realistic fields', T, async () => {
    sim.reset();
    const r = await post(`${sim.url}/chat/completions`, chatBody(), { authorization: `Bearer ${OA_KEY}` });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('x-request-id'), /^req_/);
    const j = await r.json();
    assert.deepEqual(Object.keys(j), ['id', 'object', 'created', 'model', 'choices', 'usage', 'service_tier', 'system_fingerprint']);
    assert.match(j.id, /^chatcmpl-[A-Za-z0-9]{29}$/);
    assert.equal(j.object, 'chat.completion');
    assert.equal(typeof j.created, 'number');
    assert.equal(j.model, 'gpt-4o');
    assert.match(j.system_fingerprint, /^fp_/);
    assert.equal(j.choices[0].message.content, 'echo: hello brave new world');
    assert.equal(j.choices[0].message.role, 'assistant');
    assert.equal(j.choices[0].finish_reason, 'stop');
    assert.equal(j.usage.completion_tokens, 5);
    assert.equal(j.usage.total_tokens, j.usage.prompt_tokens + j.usage.completion_tokens);
    assert.equal(j.usage.prompt_tokens_details.cached_tokens, 0);
    assert.equal(j.usage.completion_tokens_details.reasoning_tokens, 0);
    assert.deepEqual(sim.violations, []);
    const rec = sim.lastRequest;
    assert.equal(rec.path, '/v1/chat/completions');
    assert.equal(rec.json.model, 'gpt-4o');
    assert.deepEqual(rec.answer.usage, j.usage);
  });

  test('content parts: text parts are echoed', T, async () => {
    sim.reset();
    const r = await post(
      `${sim.url}/chat/completions`,
      chatBody({ messages: [{ role: 'user', content: [{ type: 'text', text: 'part one' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }, { type: 'text', text: 'part two' }] }] }),
      { authorization: `Bearer ${OA_KEY}` },
    );
    assert.equal((await r.json()).choices[0].message.content, 'echo: part one part two');
  });

  test('wrong key: 401 echoing only the start of the key, and a violation', T, async () => {
    sim.reset();
    const r = await post(`${sim.url}/chat/completions`, chatBody(), { authorization: 'Bearer sk-abcdefghijklmnop' });
    assert.equal(r.status, 401);
    const j = await r.json();
    assert.equal(j.error.code, 'invalid_api_key');
    assert.match(j.error.message, /^Incorrect API key provided: sk-abc\*\*\*/);
    assert.ok(!j.error.message.includes('sk-abcdefghijklmnop'));
    assert.equal(sim.violations.length, 1);
    assert.match(sim.violations[0], /wrong Authorization/);
  });

  test('missing key: 401 and a violation', T, async () => {
    sim.reset();
    const r = await post(`${sim.url}/chat/completions`, chatBody());
    assert.equal(r.status, 401);
    assert.match((await r.json()).error.message, /didn't provide an API key/);
    assert.match(sim.violations.join('\n'), /missing Authorization/);
  });

  test('a forwarded client credential is a violation', T, async () => {
    sim.reset();
    const r = await post(`${sim.url}/chat/completions`, chatBody(), { authorization: `Bearer ${OA_KEY}`, 'x-api-key': CLIENT_KEY });
    assert.equal(r.status, 400);
    assert.match(sim.violations.join('\n'), /client credential forwarded in header x-api-key/);
    sim.reset();
    await post(`${sim.url}/chat/completions`, chatBody(), { authorization: `Bearer ${CLIENT_KEY}` });
    assert.match(sim.violations.join('\n'), /client credential forwarded in header authorization/);
  });

  test('an api-key header to OpenAI is a violation', T, async () => {
    sim.reset();
    const r = await post(`${sim.url}/chat/completions`, chatBody(), { authorization: `Bearer ${OA_KEY}`, 'api-key': OA_KEY });
    assert.equal(r.status, 400);
    assert.match(sim.violations.join('\n'), /api-key header/);
  });

  test('unknown model: 404 model_not_found and a violation', T, async () => {
    sim.reset();
    const r = await post(`${sim.url}/chat/completions`, chatBody({ model: 'gpt-5-imaginary' }), { authorization: `Bearer ${OA_KEY}` });
    assert.equal(r.status, 404);
    assert.equal((await r.json()).error.code, 'model_not_found');
    assert.match(sim.violations.join('\n'), /gpt-5-imaginary/);
  });

  test('request shape violations', T, async () => {
    const auth = { authorization: `Bearer ${OA_KEY}` };
    const cases = [
      [() => post(`${sim.url}/chat/completions`, '{"model":', auth), /not valid JSON/],
      [() => post(`${sim.url}/chat/completions`, { model: 'gpt-4o' }, auth), /messages/],
      [() => post(`${sim.url}/chat/completions`, { messages: [{ role: 'user', content: 'x' }] }, auth), /missing "model"/],
      [() => post(`${sim.url}/chat/completions`, chatBody({ stream: true }), auth), /include_usage/],
      [() => post(`${sim.url}/chat/completions`, chatBody({ stream: true, stream_options: { include_usage: false } }), auth), /include_usage/],
      [() => post(`${sim.url}/chat/completions`, chatBody({ stream_options: { include_usage: true } }), auth), /stream_options sent without stream/],
      [() => post(`${sim.url}/chat/completions`, chatBody(), { ...auth, 'content-type': 'text/plain' }), /Content-Type/],
      [() => post(`${sim.url}/completions`, chatBody(), auth), /unexpected path/],
      [() => fetch(`${sim.url}/chat/completions`, { headers: auth }), /wrong method GET/],
      [() => post(`${sim.url}/embeddings`, { model: 'text-embedding-3-small', input: [1, 'a'] }, auth), /input/],
    ];
    for (const [send, re] of cases) {
      sim.reset();
      const r = await send();
      assert.equal(r.status, 400, `${re}: status`);
      const j = await r.json();
      assert.match(j.error.message, /cloudmux-sim/);
      assert.equal(sim.violations.length, 1, `${re}: ${sim.violations}`);
      assert.match(sim.violations[0], re);
    }
  });

  test('application/json with charset is accepted', T, async () => {
    sim.reset();
    const r = await post(`${sim.url}/chat/completions`, chatBody(), { authorization: `Bearer ${OA_KEY}`, 'content-type': 'application/json; charset=utf-8' });
    assert.equal(r.status, 200);
    assert.deepEqual(sim.violations, []);
  });

  test('stream: role first, word chunks, usage:null per chunk, usage chunk, [DONE]', T, async () => {
    sim.reset();
    const r = await post(`${sim.url}/chat/completions`, chatBody({ stream: true, stream_options: { include_usage: true } }), { authorization: `Bearer ${OA_KEY}` });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^text\/event-stream/);
    const text = await r.text();
    assert.ok(text.endsWith('data: [DONE]\n\n'));
    const events = parseSSE(text);
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.data));
    assert.deepEqual(Object.keys(chunks[0]), ['id', 'object', 'created', 'model', 'service_tier', 'system_fingerprint', 'choices', 'usage', 'obfuscation']);
    assert.deepEqual(chunks[0].choices[0].delta, { role: 'assistant', content: '', refusal: null });
    assert.equal(joinContent(events), 'echo: hello brave new world');
    assert.deepEqual(chunks.slice(1, 6).map((c) => c.choices[0].delta.content), ['echo:', ' hello', ' brave', ' new', ' world']);
    for (const c of chunks.slice(0, -1)) assert.equal(c.usage, null);
    const fin = chunks[chunks.length - 2];
    assert.equal(fin.choices[0].finish_reason, 'stop');
    const last = chunks[chunks.length - 1];
    assert.deepEqual(last.choices, []);
    assert.equal(last.usage.completion_tokens, 5);
    assert.equal(last.usage.prompt_tokens_details.cached_tokens, 0);
    assert.deepEqual(sim.violations, []);
  });

  test('tools: a call to the first tool, then text from the tool result', T, async () => {
    sim.reset();
    const r = await post(`${sim.url}/chat/completions`, chatBody({ tools: [weatherTool] }), { authorization: `Bearer ${OA_KEY}` });
    const j = await r.json();
    assert.equal(j.choices[0].finish_reason, 'tool_calls');
    const tc = j.choices[0].message.tool_calls[0];
    assert.match(tc.id, /^call_\d+$/);
    assert.equal(tc.type, 'function');
    assert.equal(tc.function.name, 'get_weather');
    assert.equal(tc.function.arguments, '{"city":"Paris"}');
    assert.equal(j.choices[0].message.content, null);

    const r2 = await post(
      `${sim.url}/chat/completions`,
      chatBody({
        tools: [weatherTool],
        messages: [...chatBody().messages, j.choices[0].message, { role: 'tool', tool_call_id: tc.id, content: 'sunny, 21C' }],
      }),
      { authorization: `Bearer ${OA_KEY}` },
    );
    const j2 = await r2.json();
    assert.equal(j2.choices[0].finish_reason, 'stop');
    assert.match(j2.choices[0].message.content, /sunny, 21C/);
    assert.deepEqual(sim.violations, []);
  });

  test('tools: named tool_choice, tool_choice none, tool without city', T, async () => {
    const other = { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: { tz: { type: 'string' } } } } };
    const auth = { authorization: `Bearer ${OA_KEY}` };
    let j = await (await post(`${sim.url}/chat/completions`, chatBody({ tools: [weatherTool, other], tool_choice: { type: 'function', function: { name: 'get_time' } } }), auth)).json();
    assert.equal(j.choices[0].message.tool_calls[0].function.name, 'get_time');
    assert.equal(j.choices[0].message.tool_calls[0].function.arguments, '{}');
    j = await (await post(`${sim.url}/chat/completions`, chatBody({ tools: [weatherTool], tool_choice: 'none' }), auth)).json();
    assert.equal(j.choices[0].message.content, 'echo: hello brave new world');
  });

  test('stream tools: name first, then argument fragments that reassemble', T, async () => {
    sim.reset();
    const r = await post(`${sim.url}/chat/completions`, chatBody({ tools: [weatherTool], stream: true, stream_options: { include_usage: true } }), { authorization: `Bearer ${OA_KEY}` });
    const events = parseSSE(await r.text());
    const chunks = events.filter((e) => e.data !== '[DONE]').map((e) => JSON.parse(e.data));
    const first = chunks[0].choices[0].delta.tool_calls[0];
    assert.equal(first.function.name, 'get_weather');
    assert.equal(first.function.arguments, '');
    assert.ok(chunks.filter((c) => c.choices[0]?.delta?.tool_calls).length >= 3, 'arguments come in several fragments');
    const calls = reassembleTools(events);
    assert.deepEqual(calls, [{ id: sim.lastRequest.answer.toolCalls[0].id, name: 'get_weather', arguments: '{"city":"Paris"}' }]);
    assert.equal(chunks.at(-2).choices[0].finish_reason, 'tool_calls');
  });

  test('embeddings: float, base64, batch, token arrays, dimensions', T, async () => {
    sim.reset();
    const auth = { authorization: `Bearer ${OA_KEY}` };
    let j = await (await post(`${sim.url}/embeddings`, { model: 'text-embedding-3-small', input: 'hello' }, auth)).json();
    assert.equal(j.object, 'list');
    assert.equal(j.data.length, 1);
    assert.deepEqual(j.data[0].embedding, embeddingFor('hello'));
    assert.equal(j.data[0].embedding.length, 8);
    assert.equal(j.usage.prompt_tokens, 1);

    j = await (await post(`${sim.url}/embeddings`, { model: 'text-embedding-3-small', input: ['a b', 'c'], encoding_format: 'base64', dimensions: 4 }, auth)).json();
    assert.equal(j.data.length, 2);
    assert.equal(j.data[1].index, 1);
    assert.equal(j.data[0].embedding, embeddingToBase64(embeddingFor('a b', 4)));
    assert.deepEqual(embeddingFromBase64(j.data[1].embedding), embeddingFor('c', 4));
    assert.equal(j.usage.prompt_tokens, 3);

    j = await (await post(`${sim.url}/embeddings`, { model: 'text-embedding-3-small', input: [1, 2, 3] }, auth)).json();
    assert.equal(j.data.length, 1);
    assert.deepEqual(j.data[0].embedding, embeddingFor([1, 2, 3]));
    j = await (await post(`${sim.url}/embeddings`, { model: 'text-embedding-3-small', input: [[1, 2], [3]] }, auth)).json();
    assert.equal(j.data.length, 2);
    assert.deepEqual(sim.violations, []);
  });

  test('scripted errors: status, default bodies, headers, times', T, async () => {
    sim.reset();
    const auth = { authorization: `Bearer ${OA_KEY}` };
    sim.enqueue({ status: 429, headers: { 'retry-after': '3', 'retry-after-ms': '3000' } });
    sim.enqueue({ status: 500, times: 2 });
    sim.enqueue({ status: 400, body: { error: { message: 'custom', type: 'invalid_request_error', param: null, code: 'x' } } });
    let r = await post(`${sim.url}/chat/completions`, chatBody(), auth);
    assert.equal(r.status, 429);
    assert.equal(r.headers.get('retry-after'), '3');
    assert.equal(r.headers.get('retry-after-ms'), '3000');
    assert.equal((await r.json()).error.code, 'rate_limit_exceeded');
    for (let i = 0; i < 2; i++) {
      r = await post(`${sim.url}/chat/completions`, chatBody(), auth);
      assert.equal(r.status, 500);
      assert.equal((await r.json()).error.type, 'server_error');
    }
    r = await post(`${sim.url}/chat/completions`, chatBody(), auth);
    assert.equal(r.status, 400);
    assert.equal((await r.json()).error.message, 'custom');
    r = await post(`${sim.url}/chat/completions`, chatBody(), auth);
    assert.equal(r.status, 200);
    assert.deepEqual(sim.violations, []);
  });

  test('echoKeyInError puts the full expected key in the message', T, async () => {
    sim.enqueue({ echoKeyInError: true });
    const r = await post(`${sim.url}/chat/completions`, chatBody(), { authorization: `Bearer ${OA_KEY}` });
    assert.equal(r.status, 401);
    assert.ok((await r.json()).error.message.includes(OA_KEY));
  });

  test('delayMs delays the headers', T, async () => {
    sim.enqueue({ delayMs: 300 });
    const t0 = performance.now();
    const r = await post(`${sim.url}/chat/completions`, chatBody(), { authorization: `Bearer ${OA_KEY}` });
    assert.ok(performance.now() - t0 >= 280);
    assert.equal(r.status, 200);
  });

  test('paceMs + chunks: at least N content chunks, spaced out', T, async () => {
    sim.reset();
    sim.enqueue({ paceMs: 50, chunks: 10 });
    const t0 = performance.now();
    const r = await post(`${sim.url}/chat/completions`, chatBody({ stream: true, stream_options: { include_usage: true } }), { authorization: `Bearer ${OA_KEY}` });
    const times = [];
    const events = [];
    for await (const ev of readSSE(r)) {
      times.push(ev.at - t0);
      events.push(ev);
    }
    const contentChunks = events.filter((e) => e.data !== '[DONE]' && JSON.parse(e.data).choices[0]?.delta?.content);
    assert.ok(contentChunks.length >= 10, `${contentChunks.length} content chunks`);
    assert.ok(times[0] < 40, `first event after ${times[0]} ms`);
    assert.ok(times.at(-1) >= 50 * (events.length - 1) - 20, `last after ${times.at(-1)} ms`);
    assert.equal(joinContent(events), sim.lastRequest.answer.text);
  });

  test('resetAfterChunks: the body read fails after N events', T, async () => {
    sim.reset();
    sim.enqueue({ resetAfterChunks: 3 });
    const r = await post(`${sim.url}/chat/completions`, chatBody({ stream: true, stream_options: { include_usage: true } }), { authorization: `Bearer ${OA_KEY}` });
    const got = [];
    await assert.rejects(async () => {
      for await (const ev of readSSE(r)) got.push(ev);
    });
    assert.equal(got.length, 3);
    assert.equal(joinContent(got), 'echo: hello');
    assert.equal(sim.closedEarly.length, 0, 'a reset by the sim is not a client close');
  });

  test('hangAfterChunks + client abort: recorded in closedEarly', T, async () => {
    sim.reset();
    sim.enqueue({ hangAfterChunks: 2 });
    const ac = new AbortController();
    const r = await fetch(`${sim.url}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${OA_KEY}` },
      body: JSON.stringify(chatBody({ stream: true, stream_options: { include_usage: true } })),
      signal: ac.signal,
    });
    const got = [];
    await assert.rejects(async () => {
      for await (const ev of readSSE(r)) {
        got.push(ev);
        if (got.length === 2) setTimeout(() => ac.abort(), 100);
      }
    });
    assert.equal(got.length, 2);
    await waitUntil(() => sim.closedEarly.length === 1, 1000, 'closedEarly');
    assert.equal(sim.closedEarly[0].hung, true);
  });

  test('errorAfterChunks: an in-band error event ends the stream', T, async () => {
    sim.enqueue({ errorAfterChunks: 2 });
    const r = await post(`${sim.url}/chat/completions`, chatBody({ stream: true, stream_options: { include_usage: true } }), { authorization: `Bearer ${OA_KEY}` });
    const events = parseSSE(await r.text());
    assert.equal(events.length, 3);
    assert.equal(JSON.parse(events[2].data).error.type, 'server_error');
  });

  test('a malformed HTTP request is a violation', T, async () => {
    sim.reset();
    const sock = net.connect(sim.port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    let buf = '';
    sock.on('data', (d) => (buf += d));
    sock.write('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n');
    await waitUntil(() => buf.includes('400 Bad Request'), 2000, '400');
    sock.destroy();
    assert.match(sim.violations.join('\n'), /malformed HTTP request: HPE_/);
  });

  test('keep-alive and an HTTP/1.1 100-continue upload work', T, async () => {
    const body = JSON.stringify(chatBody());
    const sock = net.connect(sim.port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    let buf = '';
    sock.on('data', (d) => (buf += d));
    sock.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${OA_KEY}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nExpect: 100-continue\r\n\r\n`);
    await waitUntil(() => buf.includes('100 Continue'), 2000, '100 Continue');
    sock.write(body);
    await waitUntil(() => buf.includes('echo: hello brave new world'), 2000, 'response');
    sock.destroy();
  });
});

describe('azure flavor', () => {
  let sim;
  before(async () => {
    sim = await startSim({ flavor: 'azure', name: 'az', apiKey: AZ_KEY, apiVersion: '2024-10-21', deployments: ['gpt4o-prod', 'embed-prod'] });
  });
  after(() => sim.close());
  const classic = (dep = 'gpt4o-prod', op = 'chat/completions', v = '2024-10-21') => `${sim.url}/openai/deployments/${dep}/${op}?api-version=${v}`;

  test('url shape', T, () => {
    assert.match(sim.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  });

  test('classic chat: Azure extras and headers', T, async () => {
    sim.reset();
    const r = await post(classic(), { messages: [{ role: 'user', content: 'hi azure' }] }, { 'api-key': AZ_KEY });
    assert.equal(r.status, 200);
    assert.ok(r.headers.get('apim-request-id'));
    assert.equal(r.headers.get('x-ms-region'), 'East US');
    const j = await r.json();
    assert.equal(j.choices[0].message.content, 'echo: hi azure');
    assert.ok(j.choices[0].content_filter_results.hate);
    assert.equal(j.prompt_filter_results[0].prompt_index, 0);
    assert.equal(sim.lastRequest.surface, 'classic');
    assert.equal(sim.lastRequest.deployment, 'gpt4o-prod');
    assert.equal(sim.lastRequest.query['api-version'], '2024-10-21');
    assert.deepEqual(sim.violations, []);
  });

  test('v1 surface: model is the deployment, no api-version needed', T, async () => {
    sim.reset();
    const r = await post(`${sim.url}/openai/v1/chat/completions`, { model: 'gpt4o-prod', messages: [{ role: 'user', content: 'hi v1' }] }, { 'api-key': AZ_KEY });
    assert.equal(r.status, 200);
    assert.equal((await r.json()).choices[0].message.content, 'echo: hi v1');
    assert.equal(sim.lastRequest.surface, 'v1');
    assert.deepEqual(sim.violations, []);
    sim.reset();
    const r2 = await post(`${sim.url}/openai/v1/chat/completions`, { model: 'nope', messages: [{ role: 'user', content: 'x' }] }, { 'api-key': AZ_KEY });
    assert.equal(r2.status, 404);
    assert.equal((await r2.json()).error.code, 'DeploymentNotFound');
    assert.match(sim.violations[0], /deployment "nope"/);
  });

  test('violations: api-version, deployment, Authorization header, missing key', T, async () => {
    const cases = [
      [() => post(classic('gpt4o-prod', 'chat/completions', '2023-05-15'), { messages: [{ role: 'user', content: 'x' }] }, { 'api-key': AZ_KEY }), 400, /api-version is 2023-05-15/],
      [() => post(`${sim.url}/openai/deployments/gpt4o-prod/chat/completions`, { messages: [{ role: 'user', content: 'x' }] }, { 'api-key': AZ_KEY }), 400, /missing api-version/],
      [() => post(classic('other'), { messages: [{ role: 'user', content: 'x' }] }, { 'api-key': AZ_KEY }), 404, /deployment "other"/],
      [() => post(classic(), { messages: [{ role: 'user', content: 'x' }] }, { 'api-key': AZ_KEY, authorization: 'Bearer x' }), 400, /Authorization header was sent to Azure/],
      [() => post(classic(), { messages: [{ role: 'user', content: 'x' }] }), 401, /missing api-key/],
      [() => post(classic(), { messages: [{ role: 'user', content: 'x' }] }, { 'api-key': 'wrong' }), 401, /wrong api-key/],
      [() => post(`${sim.url}/v1/chat/completions`, { model: 'gpt4o-prod', messages: [{ role: 'user', content: 'x' }] }, { 'api-key': AZ_KEY }), 400, /unexpected path/],
    ];
    for (const [send, status, re] of cases) {
      sim.reset();
      const r = await send();
      assert.equal(r.status, status, String(re));
      assert.match(sim.violations.join('\n'), re);
    }
  });

  test('stream: prompt_filter_results chunk first, content_filter_results, usage chunk', T, async () => {
    sim.reset();
    const r = await post(classic(), { messages: [{ role: 'user', content: 'stream me' }], stream: true, stream_options: { include_usage: true } }, { 'api-key': AZ_KEY });
    const events = parseSSE(await r.text());
    const first = JSON.parse(events[0].data);
    assert.deepEqual(first.choices, []);
    assert.equal(first.id, '');
    assert.equal(first.model, '');
    assert.equal(first.created, 0);
    assert.ok(first.prompt_filter_results);
    const second = JSON.parse(events[1].data);
    assert.deepEqual(Object.keys(second), ['choices', 'created', 'id', 'model', 'obfuscation', 'object', 'system_fingerprint', 'usage']);
    assert.equal(joinContent(events), 'echo: stream me');
    const third = JSON.parse(events[2].data);
    assert.ok(third.choices[0].content_filter_results.violence);
    const usage = JSON.parse(events.at(-2).data);
    assert.deepEqual(usage.choices, []);
    assert.ok(usage.usage.total_tokens > 0);
    assert.equal(events.at(-1).data, '[DONE]');
    assert.deepEqual(sim.violations, []);
  });

  test('429 in Azure shape: code "429", retry-after', T, async () => {
    sim.enqueue({ status: 429 });
    const r = await post(classic(), { messages: [{ role: 'user', content: 'x' }] }, { 'api-key': AZ_KEY });
    assert.equal(r.status, 429);
    assert.equal(r.headers.get('retry-after'), '1');
    const j = await r.json();
    assert.equal(j.error.code, '429');
    assert.match(j.error.message, /exceeded token rate limit/);
  });

  test('content filter error', T, async () => {
    sim.enqueue({ contentFilter: true });
    const r = await post(classic(), { messages: [{ role: 'user', content: 'x' }] }, { 'api-key': AZ_KEY });
    assert.equal(r.status, 400);
    const j = await r.json();
    assert.equal(j.error.code, 'content_filter');
    assert.equal(j.error.innererror.code, 'ResponsibleAIPolicyViolation');
  });

  test('embeddings on both surfaces', T, async () => {
    sim.reset();
    let r = await post(classic('embed-prod', 'embeddings'), { input: ['x', 'y'] }, { 'api-key': AZ_KEY });
    let j = await r.json();
    assert.equal(j.data.length, 2);
    assert.deepEqual(j.data[0].embedding, embeddingFor('x'));
    r = await post(`${sim.url}/openai/v1/embeddings`, { model: 'embed-prod', input: 'x' }, { 'api-key': AZ_KEY });
    j = await r.json();
    assert.deepEqual(j.data[0].embedding, embeddingFor('x'));
    assert.deepEqual(sim.violations, []);
  });
});

describe('compatible flavor', () => {
  let sim;
  let keyed;
  before(async () => {
    sim = await startSim({ flavor: 'compatible', name: 'vllm', models: ['llama-3.1-8b'] });
    keyed = await startSim({ flavor: 'compatible', name: 'vllm-keyed', apiKey: 'sk-vllm-key' });
  });
  after(async () => {
    await sim.close();
    await keyed.close();
  });
  const body = (extra = {}) => ({ model: 'llama-3.1-8b', messages: [{ role: 'user', content: 'hi there' }], ...extra });

  test('no key needed; any auth header to a keyless upstream is a violation', T, async () => {
    sim.reset();
    let r = await post(`${sim.url}/chat/completions`, body());
    assert.equal(r.status, 200);
    const j = await r.json();
    assert.equal(j.choices[0].message.content, 'echo: hi there');
    assert.match(j.id, /^chatcmpl-/);
    assert.deepEqual(sim.violations, []);
    r = await post(`${sim.url}/chat/completions`, body(), { authorization: 'Bearer whatever' });
    assert.equal(r.status, 400);
    assert.match(sim.violations.join('\n'), /keyless upstream/);
  });

  test('keyed compatible upstream wants its Bearer key', T, async () => {
    let r = await post(`${keyed.url}/chat/completions`, body());
    assert.equal(r.status, 401);
    r = await post(`${keyed.url}/chat/completions`, body(), { authorization: 'Bearer sk-vllm-key' });
    assert.equal(r.status, 200);
  });

  test('plain stream has no per-chunk usage:null but a usage chunk and [DONE]', T, async () => {
    sim.reset();
    const r = await post(`${sim.url}/chat/completions`, body({ stream: true, stream_options: { include_usage: true } }));
    const events = parseSSE(await r.text());
    assert.equal(events.at(-1).data, '[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.data));
    assert.ok(!('usage' in chunks[0]));
    assert.ok(chunks.at(-1).usage.total_tokens > 0);
    assert.equal(joinContent(events), 'echo: hi there');
  });

  test('quirks: noUsage, noDone, noIdCreated', T, async () => {
    sim.enqueue({ noUsage: true, noDone: true, noIdCreated: true });
    const r = await post(`${sim.url}/chat/completions`, body({ stream: true, stream_options: { include_usage: true } }));
    const text = await r.text();
    assert.ok(!text.includes('[DONE]'));
    const chunks = parseSSE(text).map((e) => JSON.parse(e.data));
    for (const c of chunks) {
      assert.ok(!('usage' in c));
      assert.ok(!('id' in c));
      assert.ok(!('created' in c));
    }
    assert.equal(chunks.at(-1).choices[0].finish_reason, 'stop');
  });

  test('quirk: a tool call whole in one chunk', T, async () => {
    sim.enqueue({ wholeToolCall: true });
    const r = await post(`${sim.url}/chat/completions`, body({ tools: [weatherTool], stream: true, stream_options: { include_usage: true } }));
    const events = parseSSE(await r.text());
    const withCalls = events.filter((e) => e.data !== '[DONE]' && JSON.parse(e.data).choices[0]?.delta?.tool_calls);
    assert.equal(withCalls.length, 1);
    const tc = JSON.parse(withCalls[0].data).choices[0].delta.tool_calls[0];
    assert.equal(tc.function.name, 'get_weather');
    assert.equal(tc.function.arguments, '{"city":"Paris"}');
  });

  test('opts.quirks apply to every request', T, async () => {
    const q = await startSim({ flavor: 'compatible', name: 'q', quirks: { noDone: true } });
    try {
      for (let i = 0; i < 2; i++) {
        const r = await post(`${q.url}/chat/completions`, body({ stream: true, stream_options: { include_usage: true } }));
        assert.ok(!(await r.text()).includes('[DONE]'));
      }
    } finally {
      await q.close();
    }
  });
});
