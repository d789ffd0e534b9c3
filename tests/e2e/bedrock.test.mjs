// AWS Bedrock through cloudmux with the official openai client, against tests/sim/bedrock-sim.mjs,
// which checks every signature with AWS's own @smithy/signature-v4, validates bodies against the
// botocore shapes and encodes streams with @smithy/eventstream-codec.

import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startGateway } from './lib/gateway.mjs';
import { sdk, CLIENT_KEY, KEYS, joinDeltas, reassembleToolCalls, weatherTool, postJSON } from './lib/stack.mjs';
import { startSim } from '../sim/openai-sim.mjs';
import { startBedrockSim, AWS_CREDS, BEDROCK_API_KEY } from '../sim/bedrock-sim.mjs';
import { embeddingFor } from '../sim/openai-sim.mjs';

const T = { timeout: 20_000 };
const CLAUDE = 'anthropic.claude-3-5-sonnet-20240620-v1:0';
const PROFILE = 'us.anthropic.claude-3-7-sonnet-20250219-v1:0';
let br, brKey, oa, gw, client;

before(async () => {
  br = await startBedrockSim({ name: 'aws-use1' });
  brKey = await startBedrockSim({ name: 'aws-key', creds: null, apiKey: BEDROCK_API_KEY });
  oa = await startSim({ name: 'oa', flavor: 'openai', apiKey: KEYS.openai, models: ['gpt-4o'] });
  const config = {
    providers: [
      {
        name: 'aws-use1',
        type: 'bedrock',
        cloud: 'aws',
        region: 'us-east-1',
        access_key_id: '${CMX_E2E_AKID}',
        secret_access_key: '${CMX_E2E_SECRET}',
        session_token: '${CMX_E2E_TOKEN}',
        endpoint: br.url,
      },
      {
        name: 'aws-badkey',
        type: 'bedrock',
        cloud: 'aws',
        region: 'us-east-1',
        access_key_id: '${CMX_E2E_AKID}',
        secret_access_key: '${CMX_E2E_WRONG_SECRET}',
        session_token: '${CMX_E2E_TOKEN}',
        endpoint: br.url,
      },
      { name: 'aws-key', type: 'bedrock', cloud: 'aws', region: 'us-east-1', api_key: '${CMX_E2E_BEDROCK_KEY}', endpoint: brKey.url },
      { name: 'oa', type: 'openai', cloud: 'openai', base_url: oa.url, api_key: '${CMX_E2E_OA_KEY}' },
    ],
    models: [
      { name: 'claude', deployments: [{ provider: 'aws-use1', model: CLAUDE }] },
      { name: 'claude-profile', deployments: [{ provider: 'aws-key', model: PROFILE }] },
      { name: 'claude-badkey', deployments: [{ provider: 'aws-badkey', model: CLAUDE }] },
      {
        name: 'claude-ha',
        deployments: [
          { provider: 'aws-use1', model: CLAUDE, priority: 1 },
          { provider: 'oa', model: 'gpt-4o', priority: 2 },
        ],
      },
      { name: 'titan', deployments: [{ provider: 'aws-use1', model: 'amazon.titan-embed-text-v2:0' }] },
      { name: 'cohere', deployments: [{ provider: 'aws-use1', model: 'cohere.embed-english-v3' }] },
    ],
    routing: { max_attempts: 2 },
  };
  gw = await startGateway({
    config,
    env: {
      CMX_E2E_AKID: AWS_CREDS.accessKeyId,
      CMX_E2E_SECRET: AWS_CREDS.secretAccessKey,
      CMX_E2E_WRONG_SECRET: 'not-the-secret-key-at-all',
      CMX_E2E_TOKEN: AWS_CREDS.sessionToken,
      CMX_E2E_BEDROCK_KEY: BEDROCK_API_KEY,
      CMX_E2E_OA_KEY: KEYS.openai,
    },
  });
  client = sdk(gw);
});

after(async () => {
  await gw?.kill();
  await Promise.all([br?.close(), brKey?.close(), oa?.close()]);
  const report = gw?.sanitizerReport();
  if (report) throw new Error(`cloudmux sanitizer report:\n${report}`);
});

beforeEach(() => {
  br.reset();
  brKey.reset();
  oa.reset();
});

const violations = () => [...br.violations, ...brKey.violations, ...oa.violations];
const noSecrets = (text) => {
  for (const s of [AWS_CREDS.secretAccessKey, AWS_CREDS.sessionToken, BEDROCK_API_KEY]) assert.ok(!text.includes(s), 'a secret leaked');
};

test('plain chat: Converse with a SigV4 signature AWS accepts; usage in OpenAI terms', T, async () => {
  br.enqueue({ cache: { read: 5, write: 2 } });
  const { data, response } = await client.chat.completions
    .create({ model: 'claude', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'hello there' }], max_tokens: 100, temperature: 0.3 })
    .withResponse();
  assert.equal(response.headers.get('x-cloudmux-provider'), 'aws-use1');
  assert.equal(data.object, 'chat.completion');
  assert.equal(data.choices[0].message.content, 'You said: hello there');
  assert.equal(data.choices[0].finish_reason, 'stop');
  // inputTokens 2 (+5 cache read +2 cache write) -> prompt 9, cached 5; output 4 words
  assert.equal(data.usage.prompt_tokens, 9);
  assert.equal(data.usage.prompt_tokens_details.cached_tokens, 5);
  assert.equal(data.usage.completion_tokens, 4);
  assert.equal(data.usage.total_tokens, 13);
  const rec = br.lastRequest;
  assert.equal(rec.url, '/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse');
  assert.equal(rec.auth, 'sigv4');
  assert.equal(br.signatureChecks > 0, true);
  assert.deepEqual(rec.json.system, [{ text: 'Be brief.' }]);
  assert.deepEqual(rec.json.inferenceConfig, { maxTokens: 100, temperature: 0.3 });
  assert.ok(!rec.headers.authorization.includes(AWS_CREDS.secretAccessKey));
  assert.deepEqual(violations(), []);
});

test('a wrong secret is refused by the simulator (403 InvalidSignatureException) and mapped', T, async () => {
  const r = await postJSON(gw.url, '/v1/chat/completions', { model: 'claude-badkey', messages: [{ role: 'user', content: 'hi' }] });
  assert.equal(r.status, 403);
  const text = await r.text();
  const e = JSON.parse(text).error;
  assert.equal(e.code, 'InvalidSignatureException');
  assert.equal(e.type, 'permission_error');
  assert.match(e.message, /signature we calculated does not match/);
  assert.equal(br.lastRequest.denied, 'InvalidSignatureException');
  noSecrets(text);
  assert.deepEqual(violations(), []);
});

test('streamed: ConverseStream frames split at random become chunks, usage chunk, [DONE]', T, async () => {
  for (const split of ['random', 'bytes']) {
    br.enqueue({ split });
    const stream = await client.chat.completions.create({
      model: 'claude',
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'stream me a few words please' }],
    });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    assert.equal(joinDeltas(chunks), 'You said: stream me a few words please');
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    const fin = chunks.filter((c) => c.choices[0]?.finish_reason);
    assert.equal(fin.length, 1);
    assert.equal(fin[0].choices[0].finish_reason, 'stop');
    const last = chunks[chunks.length - 1];
    assert.deepEqual(last.choices, []);
    assert.equal(last.usage.prompt_tokens, 6);
    assert.equal(last.usage.completion_tokens, 8);
    assert.ok(chunks.every((c) => c.id === chunks[0].id && c.object === 'chat.completion.chunk'));
    assert.equal(br.lastRequest.url, '/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream');
  }
  // without include_usage the usage chunk is not sent
  const stream = await client.chat.completions.create({ model: 'claude', stream: true, messages: [{ role: 'user', content: 'x y' }] });
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  assert.ok(chunks.every((c) => !c.usage));
  assert.deepEqual(violations(), []);
});

test('tool call round trip: the client runs the tool and sends the result back', T, async () => {
  const messages = [{ role: 'user', content: 'What is the weather in Oslo?' }];
  const first = await client.chat.completions.create({ model: 'claude', messages, tools: [weatherTool], tool_choice: 'auto' });
  const msg = first.choices[0].message;
  assert.equal(first.choices[0].finish_reason, 'tool_calls');
  assert.equal(msg.content, 'Let me check.');
  assert.equal(msg.tool_calls.length, 1);
  const call = msg.tool_calls[0];
  assert.equal(call.function.name, 'get_weather');
  assert.deepEqual(JSON.parse(call.function.arguments), { city: 'Oslo' });
  const sent = br.lastRequest.json.toolConfig;
  assert.deepEqual(sent.toolChoice, { auto: {} });
  assert.equal(sent.tools[0].toolSpec.name, 'get_weather');
  assert.equal(sent.tools[0].toolSpec.inputSchema.json.required[0], 'city');
  // the client executes the tool
  const result = JSON.stringify({ city: JSON.parse(call.function.arguments).city, temp_c: -3 });
  messages.push(msg, { role: 'tool', tool_call_id: call.id, content: result });
  const second = await client.chat.completions.create({ model: 'claude', messages, tools: [weatherTool] });
  assert.equal(second.choices[0].message.content, `The tool said: ${result}`);
  assert.equal(second.choices[0].finish_reason, 'stop');
  const conv = br.lastRequest.json.messages;
  assert.deepEqual(conv.map((m) => m.role), ['user', 'assistant', 'user']);
  assert.equal(conv[1].content[1].toolUse.toolUseId, call.id);
  assert.equal(conv[2].content[0].toolResult.toolUseId, call.id);
  assert.deepEqual(violations(), []);
});

test('streamed tool call: toolUse input fragments become tool_call argument deltas', T, async () => {
  br.enqueue({ split: 'random' });
  const stream = await client.chat.completions.create({
    model: 'claude',
    stream: true,
    messages: [{ role: 'user', content: 'weather please' }],
    tools: [weatherTool],
    tool_choice: { type: 'function', function: { name: 'get_weather' } },
  });
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  const calls = reassembleToolCalls(chunks);
  assert.equal(calls.length, 1);
  assert.equal(calls[0].name, 'get_weather');
  assert.equal(calls[0].type, 'function');
  assert.match(calls[0].id, /^tooluse_/);
  assert.deepEqual(JSON.parse(calls[0].arguments), { city: 'Oslo' });
  assert.equal(chunks.find((c) => c.choices[0]?.finish_reason).choices[0].finish_reason, 'tool_calls');
  assert.deepEqual(br.lastRequest.json.toolConfig.toolChoice, { tool: { name: 'get_weather' } });
  assert.deepEqual(violations(), []);
});

test('image input: a data: URL becomes an image block with the same bytes', T, async () => {
  const png = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489', 'hex');
  const res = await client.chat.completions.create({
    model: 'claude',
    messages: [{ role: 'user', content: [{ type: 'text', text: 'what is this?' }, { type: 'image_url', image_url: { url: `data:image/png;base64,${png.toString('base64')}` } }] }],
  });
  assert.equal(res.choices[0].message.content, `You said: what is this? and sent a png image of ${png.length} bytes`);
  const img = br.lastRequest.json.messages[0].content[1].image;
  assert.equal(img.format, 'png');
  assert.deepEqual(Buffer.from(img.source.bytes, 'base64'), png);
  // an http image URL is refused with a clear 400 before anything is sent
  const n = br.requests.length;
  await assert.rejects(
    client.chat.completions.create({ model: 'claude', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://example.com/a.png' } }] }] }),
    (e) => e.status === 400 && /data: URLs/.test(e.message),
  );
  assert.equal(br.requests.length, n);
  assert.deepEqual(violations(), []);
});

test('embeddings: a Titan batch fans out one InvokeModel per input and comes back in order', T, async () => {
  const batch = ['alpha', 'beta gamma', 'delta', 'epsilon zeta eta', 'theta', 'iota', 'kappa', 'lambda', 'mu', 'nu', 'xi'];
  // the SDK default asks for base64 and decodes it
  const res = await client.embeddings.create({ model: 'titan', input: batch });
  assert.equal(res.data.length, batch.length);
  res.data.forEach((d, i) => {
    assert.equal(d.index, i);
    assert.deepEqual(d.embedding, embeddingFor(batch[i], 8));
  });
  assert.equal(res.usage.prompt_tokens, batch.map((t) => t.split(' ').length).reduce((a, b) => a + b));
  const calls = br.requests.filter((r) => r.op === 'invoke');
  assert.equal(calls.length, batch.length);
  assert.deepEqual(calls.map((c) => c.json.inputText).sort(), [...batch].sort());
  assert.ok(calls.every((c) => c.url === '/model/amazon.titan-embed-text-v2%3A0/invoke' && c.auth === 'sigv4'));
  // float, with dimensions
  const f = await client.embeddings.create({ model: 'titan', input: ['one', 'two'], encoding_format: 'float', dimensions: 256 });
  assert.deepEqual(f.data[1].embedding, embeddingFor('two', 256));
  assert.equal(br.lastRequest.json.dimensions, 256);
  assert.deepEqual(violations(), []);
});

test('embeddings: a failing part fails the attempt with the part\'s error', T, async () => {
  br.enqueue({ throttle: true, times: 20 });
  await assert.rejects(client.embeddings.create({ model: 'titan', input: ['a', 'b', 'c'] }), (e) => e.status === 429 && e.code === 'ThrottlingException');
  assert.deepEqual(violations(), []);
});

test('embeddings: Cohere Embed in batches of 96', T, async () => {
  const batch = Array.from({ length: 100 }, (_, i) => `text number ${i}`);
  const res = await client.embeddings.create({ model: 'cohere', input: batch, encoding_format: 'float' });
  assert.equal(res.data.length, 100);
  res.data.forEach((d, i) => assert.deepEqual(d.embedding, embeddingFor(batch[i], 8)));
  assert.equal(res.usage.prompt_tokens, 300);
  const calls = br.requests.filter((r) => r.op === 'invoke');
  assert.deepEqual(calls.map((c) => c.json.texts.length).sort(), [4, 96]);
  assert.ok(calls.every((c) => c.url === '/model/cohere.embed-english-v3/invoke' && c.json.input_type === 'search_document'));
  assert.deepEqual(violations(), []);
});

test('throttling fails over to another provider', T, async () => {
  br.enqueue({ throttle: true });
  const { data, response } = await client.chat.completions.create({ model: 'claude-ha', messages: [{ role: 'user', content: 'hello failover' }] }).withResponse();
  assert.equal(response.headers.get('x-cloudmux-provider'), 'oa');
  assert.equal(response.headers.get('x-cloudmux-attempts'), '2');
  assert.ok(data.choices[0].message.content.length > 0);
  assert.equal(br.requests.length, 1);
  assert.equal(oa.requests.length, 1);
  // a streamed request too
  br.enqueue({ throttle: true });
  const stream = await client.chat.completions.create({ model: 'claude-ha', stream: true, messages: [{ role: 'user', content: 'stream failover' }] });
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  assert.ok(joinDeltas(chunks).length > 0);
  assert.equal(oa.requests.length, 2);
  assert.deepEqual(violations(), []);
});

test('throttling with nowhere else to go: 429 rate_limit_error with the AWS code', T, async () => {
  br.enqueue({ throttle: true, times: 5 });
  await assert.rejects(client.chat.completions.create({ model: 'claude', messages: [{ role: 'user', content: 'x' }] }), (e) => {
    assert.equal(e.status, 429);
    assert.equal(e.code, 'ThrottlingException');
    assert.equal(e.type, 'rate_limit_error');
    return true;
  });
  assert.equal(br.requests.length, 2); // max_attempts 2: the same deployment retried once
});

test('in-stream exception: an in-band OpenAI error, never a silent truncation', T, async () => {
  br.enqueue({ streamException: 'throttlingException', afterEvents: 3 });
  const r = await postJSON(gw.url, '/v1/chat/completions', { model: 'claude', stream: true, messages: [{ role: 'user', content: 'one two three four' }] });
  assert.equal(r.status, 200);
  const text = await r.text();
  const events = text.split('\n\n').filter(Boolean);
  const last = JSON.parse(events[events.length - 1].slice(6));
  assert.equal(last.error.code, 'throttlingException');
  assert.equal(last.error.type, 'rate_limit_error');
  assert.ok(!text.includes('[DONE]'));
  assert.ok(events.length >= 3); // the deltas before the exception were relayed
  // the SDK surfaces it as an error while iterating
  br.enqueue({ streamException: 'modelStreamErrorException', afterEvents: 2 });
  const stream = await client.chat.completions.create({ model: 'claude', stream: true, messages: [{ role: 'user', content: 'a b c' }] });
  await assert.rejects(async () => {
    for await (const _ of stream);
  }, /modelStreamErrorException/);
  assert.deepEqual(violations(), []);
});

test('a bad CRC or a dropped connection mid-stream is an upstream error in-band', T, async () => {
  for (const b of [{ badCrc: 3 }, { cutAfter: 3 }]) {
    br.enqueue(b);
    const r = await postJSON(gw.url, '/v1/chat/completions', { model: 'claude', stream: true, messages: [{ role: 'user', content: 'one two three four' }] });
    const text = await r.text();
    // the gateway's own mid-stream error event ends the stream (no [DONE], as for every provider)
    assert.ok(!text.includes('[DONE]'), text);
    const events = text.split('\n\n').filter(Boolean);
    const last = JSON.parse(events[events.length - 1].slice(6));
    assert.equal(last.error.type, 'server_error', `${JSON.stringify(b)}: ${text}`);
    assert.equal(last.error.code, 'upstream_stream_error');
    assert.ok(!events.some((e) => e.includes('finish_reason":"stop')), 'no normal end');
  }
  // a bad CRC in the very first frame: nothing reached the client, so the router fails over
  br.enqueue({ badCrc: 0 });
  const { response } = await client.chat.completions.create({ model: 'claude-ha', stream: true, messages: [{ role: 'user', content: 'crc' }] }).withResponse();
  assert.equal(response.headers.get('x-cloudmux-provider'), 'oa');
});

test('Bedrock API key (Bearer) and an inference profile id', T, async () => {
  const res = await client.chat.completions.create({ model: 'claude-profile', messages: [{ role: 'user', content: 'bearer works' }] });
  assert.equal(res.choices[0].message.content, 'You said: bearer works');
  const rec = brKey.lastRequest;
  assert.equal(rec.auth, 'bearer');
  assert.equal(rec.url, '/model/us.anthropic.claude-3-7-sonnet-20250219-v1%3A0/converse');
  assert.equal(rec.headers['x-amz-date'], undefined);
  assert.deepEqual(violations(), []);
});

test('unsupported parameters: a clear 400, nothing sent', T, async () => {
  for (const extra of [{ n: 2 }, { logprobs: true }, { response_format: { type: 'json_object' } }]) {
    await assert.rejects(client.chat.completions.create({ model: 'claude', messages: [{ role: 'user', content: 'x' }], ...extra }), (e) => e.status === 400);
  }
  assert.equal(br.requests.length, 0);
});

test('/v1/models lists Bedrock deployments like any other', T, async () => {
  const list = await client.models.list();
  const ids = list.data.map((m) => m.id);
  for (const id of ['claude', 'claude-profile', 'titan', 'cohere', 'claude-ha']) assert.ok(ids.includes(id), id);
  assert.ok(!gw.stdoutText.includes(AWS_CREDS.secretAccessKey));
  noSecrets(gw.stderr);
});
