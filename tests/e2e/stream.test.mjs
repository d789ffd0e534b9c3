// Streaming chat: relayed as it arrives, usage only when asked, [DONE], tool-call deltas, quirky
// OpenAI-compatible upstreams.

import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, postJSON, joinDeltas, reassembleToolCalls, weatherTool } from './lib/stack.mjs';
import { readSSE, parseSSE } from '../sim/sse.mjs';

const T = { timeout: 20_000 };
let st;

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
    routing: { max_attempts: 1, timeout_s: 30 },
  });
});
after(() => st?.close());
beforeEach(() => st?.reset());

async function collect(stream) {
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  return chunks;
}

const msgs = (text = 'hello streaming world') => [{ role: 'user', content: text }];

test('SDK stream without include_usage: content, finish_reason, no usage anywhere', T, async () => {
  for (const model of ['gpt-4o', 'gpt-4o-azure', 'llama']) {
    st.reset();
    const chunks = await collect(await st.client.chat.completions.create({ model, messages: msgs(), stream: true }));
    assert.equal(joinDeltas(chunks), 'echo: hello streaming world', model);
    const last = chunks.filter((c) => c.choices?.length).at(-1);
    assert.equal(last.choices[0].finish_reason, 'stop', model);
    for (const c of chunks) {
      assert.ok(!Object.hasOwn(c, 'usage'), `${model}: chunk carries "usage": ${JSON.stringify(c).slice(0, 200)}`);
    }
    for (const c of chunks.filter((x) => Array.isArray(x.choices) && x.choices.length === 0)) {
      assert.ok(c.prompt_filter_results, `${model}: a choices:[] chunk that is not Azure's prompt filter chunk: ${JSON.stringify(c)}`);
    }
    // the gateway asked the upstream for usage anyway (the simulators flag it otherwise)
    const sent = st.sims[{ 'gpt-4o': 'oa', 'gpt-4o-azure': 'az', llama: 'local' }[model]].lastRequest.json;
    assert.deepEqual(sent.stream_options, { include_usage: true });
  }
  assert.deepEqual(st.violations(), []);
});

test('SDK stream with include_usage: usage:null on chunks, a final usage chunk', T, async () => {
  for (const model of ['gpt-4o', 'gpt-4o-azure', 'llama']) {
    st.reset();
    const chunks = await collect(
      await st.client.chat.completions.create({ model, messages: msgs(), stream: true, stream_options: { include_usage: true } }),
    );
    assert.equal(joinDeltas(chunks), 'echo: hello streaming world', model);
    const last = chunks.at(-1);
    assert.deepEqual(last.choices, [], `${model}: last chunk is the usage chunk`);
    const sim = st.sims[{ 'gpt-4o': 'oa', 'gpt-4o-azure': 'az', llama: 'local' }[model]];
    const want = sim.lastRequest.answer.usage;
    assert.equal(last.usage.prompt_tokens, want.prompt_tokens, model);
    assert.equal(last.usage.completion_tokens, want.completion_tokens, model);
    assert.equal(last.usage.total_tokens, want.total_tokens, model);
    if (model !== 'llama') {
      for (const c of chunks.slice(0, -1).filter((x) => x.choices.length)) assert.equal(c.usage, null, model);
    }
    assert.equal(chunks.filter((c) => c.usage).length, 1, `${model}: exactly one usage chunk`);
  }
  assert.deepEqual(st.violations(), []);
});

test('raw SSE: text/event-stream, events end with one data: [DONE]', T, async () => {
  const r = await postJSON(st.url, '/v1/chat/completions', { model: 'gpt-4o', messages: msgs(), stream: true });
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^text\/event-stream/);
  assert.equal(r.headers.get('x-cloudmux-provider'), 'oa');
  assert.ok(r.headers.get('x-request-id'));
  const text = await r.text();
  const events = parseSSE(text);
  assert.equal(events.at(-1).data, '[DONE]');
  assert.equal(events.filter((e) => e.data === '[DONE]').length, 1);
  assert.match(text, /data: \[DONE\]\n\n$/);
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e.data));
  assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk'));
  assert.equal(joinDeltas(chunks), 'echo: hello streaming world');
  assert.deepEqual(st.violations(), []);
});

test('Azure stream: content-filter annotations pass through', T, async () => {
  const r = await postJSON(st.url, '/v1/chat/completions', { model: 'gpt-4o-azure', messages: msgs('filter me'), stream: true });
  const events = parseSSE(await r.text());
  const chunks = events.filter((e) => e.data !== '[DONE]').map((e) => JSON.parse(e.data));
  assert.equal(joinDeltas(chunks), 'echo: filter me');
  const withContent = chunks.find((c) => c.choices?.[0]?.delta?.content === 'echo:');
  assert.ok(withContent.choices[0].content_filter_results?.hate, 'content_filter_results kept');
  assert.equal(events.at(-1).data, '[DONE]');
  assert.deepEqual(st.violations(), []);
});

test('paced stream: each chunk is relayed as it arrives (TTFB < 50% of total)', T, async () => {
  st.sims.oa.enqueue({ paceMs: 100, chunks: 10 });
  const t0 = performance.now();
  const r = await postJSON(st.url, '/v1/chat/completions', { model: 'gpt-4o', messages: msgs('pace'), stream: true });
  assert.equal(r.status, 200);
  const arrivals = [];
  let firstContent = null;
  for await (const ev of readSSE(r)) {
    if (ev.data === '[DONE]') continue;
    const c = JSON.parse(ev.data);
    if (c.choices?.[0]?.delta?.content) {
      arrivals.push(ev.at);
      if (firstContent === null) firstContent = ev.at - t0;
    }
  }
  const total = performance.now() - t0;
  assert.ok(arrivals.length >= 10, `${arrivals.length} content chunks`);
  assert.ok(total >= 1000, `stream took ${total.toFixed(0)} ms (sim paces 100 ms x 11+)`);
  assert.ok(firstContent < total * 0.5, `first content after ${firstContent.toFixed(0)} ms of ${total.toFixed(0)} ms`);
  assert.ok(firstContent < 400, `first content after ${firstContent.toFixed(0)} ms`);
  const gaps = arrivals.slice(1).map((t, i) => t - arrivals[i]);
  const spaced = gaps.filter((g) => g >= 60).length;
  assert.ok(spaced >= gaps.length - 2, `chunks arrived in bursts: gaps ${gaps.map((g) => g.toFixed(0)).join(',')}`);
  assert.deepEqual(st.violations(), []);
});

test('streamed tool call reassembles (SDK stream helper and raw deltas)', T, async () => {
  const runner = st.client.chat.completions.stream({
    model: 'gpt-4o',
    messages: msgs('weather in Paris?'),
    tools: [weatherTool],
  });
  const final = await runner.finalChatCompletion();
  const call = final.choices[0].message.tool_calls[0];
  assert.equal(final.choices[0].finish_reason, 'tool_calls');
  assert.equal(call.function.name, 'get_weather');
  assert.equal(call.function.arguments, '{"city":"Paris"}');
  assert.equal(call.id, st.sims.oa.lastRequest.answer.toolCalls[0].id);

  const chunks = await collect(
    await st.client.chat.completions.create({ model: 'gpt-4o-azure', messages: msgs('weather?'), tools: [weatherTool], stream: true }),
  );
  const calls = reassembleToolCalls(chunks);
  assert.equal(calls.length, 1);
  assert.equal(calls[0].name, 'get_weather');
  assert.equal(calls[0].type, 'function');
  assert.equal(calls[0].arguments, '{"city":"Paris"}');
  assert.ok(chunks.filter((c) => c.choices?.[0]?.delta?.tool_calls).length >= 3, 'argument fragments relayed separately');
  assert.equal(chunks.filter((c) => c.choices?.length).at(-1).choices[0].finish_reason, 'tool_calls');
  assert.deepEqual(st.violations(), []);
});

test('compatible upstream: a tool call whole in one chunk', T, async () => {
  st.sims.local.enqueue({ wholeToolCall: true });
  const final = await st.client.chat.completions
    .stream({ model: 'llama', messages: msgs('weather?'), tools: [weatherTool] })
    .finalChatCompletion();
  const call = final.choices[0].message.tool_calls[0];
  assert.equal(call.function.name, 'get_weather');
  assert.equal(call.function.arguments, '{"city":"Paris"}');
  assert.match(call.id, /^call_\d+$/);
  assert.deepEqual(st.violations(), []);
});

test('compatible quirks (no usage, no [DONE], no id/created) still give a normal SDK stream', T, async () => {
  st.sims.local.enqueue({ noUsage: true, noDone: true, noIdCreated: true, times: 2 });
  const chunks = await collect(
    await st.client.chat.completions.create({ model: 'llama', messages: msgs('quirky'), stream: true, stream_options: { include_usage: true } }),
  );
  assert.equal(joinDeltas(chunks), 'echo: quirky');
  assert.equal(chunks.filter((c) => c.choices?.length).at(-1).choices[0].finish_reason, 'stop');

  const r = await postJSON(st.url, '/v1/chat/completions', { model: 'llama', messages: msgs('quirky raw'), stream: true });
  assert.equal(r.status, 200);
  const text = await r.text();
  const events = parseSSE(text);
  assert.equal(events.at(-1).data, '[DONE]', 'cloudmux adds [DONE] when the upstream ends without it');
  assert.equal(joinDeltas(events.slice(0, -1).map((e) => JSON.parse(e.data))), 'echo: quirky raw');
  assert.deepEqual(st.violations(), []);
});

test('a server that ignores "stream": true: its whole answer becomes the stream asked for, once, metered once', T, async () => {
  st.sims.local.enqueue({ ignoreStream: true });
  const chunks = await collect(
    await st.client.chat.completions.create({ model: 'llama', messages: msgs('whole answer'), stream: true, stream_options: { include_usage: true } }),
  );
  assert.equal(joinDeltas(chunks), 'echo: whole answer');
  const last = chunks.filter((c) => c.choices?.length).at(-1);
  assert.equal(last.choices[0].finish_reason, 'stop');
  assert.equal(last.object, 'chat.completion.chunk');
  const usage = chunks.find((c) => c.usage)?.usage;
  assert.deepEqual(usage, st.sims.local.requests.at(-1).answer.usage);
  assert.equal(st.sims.local.requests.length, 1, 'not retried: the upstream answered');
  // raw: SSE with [DONE], a tool call gets its index
  st.sims.local.enqueue({ ignoreStream: true });
  const r = await postJSON(st.url, '/v1/chat/completions', { model: 'llama', messages: msgs('weather in Paris?'), tools: [weatherTool], stream: true });
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^text\/event-stream/);
  const events = parseSSE(await r.text());
  assert.equal(events.at(-1).data, '[DONE]');
  const calls = events.slice(0, -1).map((e) => JSON.parse(e.data)).flatMap((c) => c.choices?.[0]?.delta?.tool_calls ?? []);
  assert.equal(calls.length, 1);
  assert.equal(calls[0].index, 0);
  assert.equal(calls[0].function.name, 'get_weather');
  assert.deepEqual(st.violations(), []);
});

test('compatible upstream without usage: the client that asked gets no fake usage chunk but a clean end', T, async () => {
  st.sims.local.enqueue({ noUsage: true });
  const r = await postJSON(st.url, '/v1/chat/completions', { model: 'llama', messages: msgs('u'), stream: true, stream_options: { include_usage: true } });
  const events = parseSSE(await r.text());
  assert.equal(events.at(-1).data, '[DONE]');
  for (const e of events.slice(0, -1)) {
    const c = JSON.parse(e.data);
    assert.ok(!c.error, `unexpected error event ${e.data}`);
  }
  assert.deepEqual(st.violations(), []);
});

test('a finished stream leaves the connection usable (keep-alive after SSE)', T, async () => {
  for (let i = 0; i < 3; i++) {
    const chunks = await collect(await st.client.chat.completions.create({ model: 'gpt-4o', messages: msgs(`round ${i}`), stream: true }));
    assert.equal(joinDeltas(chunks), `echo: round ${i}`);
  }
  assert.deepEqual(st.violations(), []);
});

test('stream_options.include_usage: false from the client is still upgraded upstream and stripped', T, async () => {
  const chunks = await collect(
    await st.client.chat.completions.create({ model: 'gpt-4o', messages: msgs('explicit false'), stream: true, stream_options: { include_usage: false } }),
  );
  assert.equal(joinDeltas(chunks), 'echo: explicit false');
  assert.deepEqual(st.sims.oa.lastRequest.json.stream_options, { include_usage: true });
  for (const c of chunks) assert.ok(!Object.hasOwn(c, 'usage'), `chunk carries usage: ${JSON.stringify(c).slice(0, 200)}`);
  assert.deepEqual(st.violations(), []);
});

test('20 concurrent streams over all providers each get their own content', T, async () => {
  const models = ['gpt-4o', 'gpt-4o-azure', 'llama'];
  for (const s of Object.values(st.sims)) s.enqueue({ paceMs: 20, times: 20 });
  const jobs = Array.from({ length: 20 }, async (_, i) => {
    const model = models[i % 3];
    const chunks = await collect(await st.client.chat.completions.create({ model, messages: msgs(`stream number ${i}`), stream: true }));
    assert.equal(joinDeltas(chunks), `echo: stream number ${i}`, `stream ${i} via ${model}`);
  });
  await Promise.all(jobs);
  assert.deepEqual(st.violations(), []);
});
