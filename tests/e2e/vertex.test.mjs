// Vertex AI (Gemini) through cloudmux with the official openai client: service-account tokens
// (the simulator verifies the RS256 assertion with jose and checks its bearer token on every
// call), plain / streamed / tool round trip / image / embeddings, RetryInfo honoured, failures
// mid-stream, a single token exchange under concurrency, and failover to Anthropic and back.

import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { startGateway } from './lib/gateway.mjs';
import { CLIENT_KEY } from '../sim/openai-sim.mjs';
import { startVertexSim } from '../sim/vertex-sim.mjs';
import { startAnthropicSim } from '../sim/anthropic-sim.mjs';
import { embeddingFor } from '../sim/openai-sim.mjs';
import { weatherTool, reassembleToolCalls, postJSON } from './lib/stack.mjs';

const T = { timeout: 30_000 };
const ANTH_KEY = 'sk-ant-SIMSECRET-0123456789abcdef';
const EMAIL = 'cloudmux-e2e@sim-project.iam.gserviceaccount.com';
const KID = 'kid-e2e-1234';
let vx, an, gw, client, dir, pub;

async function saFile(name, tokenUri, privatePem) {
  const file = join(dir, name);
  await writeFile(file, JSON.stringify({ type: 'service_account', project_id: 'sim-project', private_key_id: KID, private_key: privatePem, client_email: EMAIL, token_uri: tokenUri }));
  return file;
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cmx-vertex-'));
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  pub = publicKey;
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' });
  vx = await startVertexSim({ name: 'vx', project: 'sim-project', region: 'us-central1', publicKey, clientEmail: EMAIL, kid: KID, accessToken: 'ya29.static-SIMSECRET-token' });
  an = await startAnthropicSim({ name: 'anth', apiKey: ANTH_KEY });
  const f1 = await saFile('sa.json', vx.tokenUri, pem);
  const f2 = await saFile('sa-herd.json', vx.tokenUri, pem);
  const f3 = await saFile('sa-broken-exchange.json', vx.tokenUri, pem);
  const vxp = (name, extra) => ({ name, type: 'vertex', cloud: 'gcp', project: 'sim-project', region: 'us-central1', endpoint: vx.url, ...extra });
  const config = {
    providers: [
      vxp('vx', { credentials_file: f1 }),
      vxp('vxherd', { credentials_file: f2 }),
      vxp('vxbroken', { credentials_file: f3 }),
      vxp('vxstatic', { access_token: '${CMX_E2E_VX_TOKEN}' }),
      { name: 'anth', type: 'anthropic', cloud: 'anthropic', base_url: an.url, api_key: '${CMX_E2E_ANTH_KEY}' },
    ],
    models: [
      { name: 'gemini', deployments: [{ provider: 'vx', model: 'gemini-2.5-pro' }] },
      { name: 'gemini-herd', deployments: [{ provider: 'vxherd', model: 'gemini-2.5-flash' }] },
      { name: 'gemini-broken', deployments: [{ provider: 'vxbroken', model: 'gemini-2.5-flash' }] },
      { name: 'gemini-static', deployments: [{ provider: 'vxstatic', model: 'gemini-2.5-flash' }] },
      { name: 'gemini-embed', deployments: [{ provider: 'vx', model: 'text-embedding-005' }] },
      { name: 'multi', deployments: [{ provider: 'vx', model: 'gemini-2.5-pro', priority: 1 }, { provider: 'anth', model: 'claude-sonnet-4-5', priority: 2 }] },
      { name: 'multi-rev', deployments: [{ provider: 'anth', model: 'claude-sonnet-4-5', priority: 1 }, { provider: 'vx', model: 'gemini-2.5-pro', priority: 2 }] },
    ],
    routing: { max_attempts: 2, timeout_s: 20 },
  };
  gw = await startGateway({ config, env: { CMX_E2E_VX_TOKEN: 'ya29.static-SIMSECRET-token', CMX_E2E_ANTH_KEY: ANTH_KEY, GOOGLE_APPLICATION_CREDENTIALS: undefined }, workers: 2 });
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: CLIENT_KEY, maxRetries: 0, timeout: 20_000 });
});

after(async () => {
  await gw?.kill();
  await vx?.close();
  await an?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
  const report = gw?.sanitizerReport();
  if (report) throw new Error(report);
});

beforeEach(() => {
  assert.deepEqual([...vx.violations, ...an.violations], []);
  vx.reset();
  an.reset();
});

const modelCalls = () => vx.requests.filter((r) => r.path !== '/token');

test('plain chat: token exchange, translation both ways, usage', T, async () => {
  const before = vx.tokenRequests;
  const r = await client.chat.completions.create({
    model: 'gemini',
    messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'hello vertex' }],
    temperature: 0.3,
    max_completion_tokens: 50,
  });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.content, 'Gemini echo: hello vertex [system: Be brief.]');
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.ok(r.usage.prompt_tokens > 0);
  const cand = 'Gemini echo: hello vertex [system: Be brief.]'.split(/\s+/).length;
  assert.equal(r.usage.completion_tokens, cand + 2); // candidates + thoughts
  assert.equal(r.usage.completion_tokens_details.reasoning_tokens, 2);
  assert.equal(r.usage.prompt_tokens_details.cached_tokens, 1);
  const [call] = modelCalls();
  assert.match(call.path, /\/models\/gemini-2\.5-pro:generateContent$/);
  assert.equal(call.body.systemInstruction.parts[0].text, 'Be brief.');
  assert.equal(call.body.generationConfig.maxOutputTokens, 50);
  assert.equal(call.body.generationConfig.temperature, 0.3);
  assert.ok(vx.tokenRequests - before <= 1);
  // a second request reuses the cached token
  const t = vx.tokenRequests;
  await client.chat.completions.create({ model: 'gemini', messages: [{ role: 'user', content: 'again' }] });
  assert.equal(vx.tokenRequests, t);
  assert.deepEqual(vx.violations, []);
});

test('a fixed access_token is sent as is', T, async () => {
  const r = await client.chat.completions.create({ model: 'gemini-static', messages: [{ role: 'user', content: 'static' }] });
  assert.equal(r.choices[0].message.content, 'Gemini echo: static');
  assert.equal(modelCalls()[0].headers.authorization, 'Bearer ya29.static-SIMSECRET-token');
});

test('one token exchange for many concurrent requests on two workers', T, async () => {
  vx.enqueueToken({ delayMs: 400 });
  const before = vx.tokenRequests;
  const rs = await Promise.all(Array.from({ length: 12 }, (_, i) => client.chat.completions.create({ model: 'gemini-herd', messages: [{ role: 'user', content: `herd ${i}` }] })));
  rs.forEach((r, i) => assert.equal(r.choices[0].message.content, `Gemini echo: herd ${i}`));
  assert.equal(vx.tokenRequests - before, 1);
  const toks = new Set(modelCalls().map((c) => c.headers.authorization));
  assert.equal(toks.size, 1);
});

test('a failing token exchange is a clean upstream error', T, async () => {
  vx.enqueueToken({ tokenStatus: 500 });
  vx.enqueueToken({ tokenStatus: 500 });
  const res = await postJSON(gw.url, '/v1/chat/completions', { model: 'gemini-broken', messages: [{ role: 'user', content: 'x' }] });
  assert.equal(res.status, 502);
  const j = await res.json();
  assert.equal(j.error.type, 'server_error');
  assert.match(j.error.message, /could not obtain an access token/);
  assert.equal(modelCalls().length, 0);
  assert.ok(!JSON.stringify(j).includes('ya29'));
  vx.reset(); // the scripted failures produced no violations but clear the token queue state
});

test('streamed chat: CRLF and LF framing, EOF ends, one usage chunk', T, async () => {
  for (const lf of [false, true]) {
    if (lf) vx.enqueue({ lf: true, paceMs: 5 });
    const stream = await client.chat.completions.create({ model: 'gemini', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'stream me please' }] });
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
    assert.equal(text, 'Gemini echo: stream me please');
    const usage = chunks.filter((c) => c.usage);
    assert.equal(usage.length, 1);
    assert.deepEqual(usage[0].choices, []);
    assert.equal(usage[0].usage.completion_tokens, text.split(/\s+/).length + 2);
    assert.equal(chunks.filter((c) => c.choices[0]?.finish_reason).map((c) => c.choices[0].finish_reason).join(), 'stop');
    const call = modelCalls().at(-1);
    assert.match(call.path, /:streamGenerateContent$/);
    assert.equal(call.url.searchParams.get('alt'), 'sse');
  }
  // without include_usage, no usage chunk
  const stream = await client.chat.completions.create({ model: 'gemini', stream: true, messages: [{ role: 'user', content: 'no usage' }] });
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  assert.equal(chunks.filter((c) => c.usage).length, 0);
});

test('tool round trip: functionDeclarations, functionCall -> tool_calls, functionResponse by name', T, async () => {
  const messages = [{ role: 'user', content: 'weather in Paris?' }];
  const r1 = await client.chat.completions.create({ model: 'gemini', messages, tools: [weatherTool], tool_choice: 'required' });
  const tc = r1.choices[0].message.tool_calls;
  assert.equal(r1.choices[0].finish_reason, 'tool_calls');
  assert.equal(tc.length, 1);
  assert.equal(tc[0].function.name, 'get_weather');
  assert.deepEqual(JSON.parse(tc[0].function.arguments), { city: 'Paris' });
  assert.match(tc[0].id, /^call_/);
  const sent = modelCalls()[0].body;
  assert.equal(sent.tools[0].functionDeclarations[0].name, 'get_weather');
  assert.deepEqual(sent.tools[0].functionDeclarations[0].parametersJsonSchema, weatherTool.function.parameters);
  assert.equal(sent.toolConfig.functionCallingConfig.mode, 'ANY');
  messages.push(r1.choices[0].message, { role: 'tool', tool_call_id: tc[0].id, content: 'sunny, 21C' });
  const r2 = await client.chat.completions.create({ model: 'gemini', messages, tools: [weatherTool] });
  assert.equal(r2.choices[0].message.content, 'The tool get_weather said {"content":"sunny, 21C"}');
  const turn = modelCalls()[1].body.contents;
  assert.equal(turn[1].role, 'model');
  assert.equal(turn[1].parts[0].functionCall.name, 'get_weather');
  assert.equal(turn[2].parts[0].functionResponse.name, 'get_weather');
  // streamed: the call arrives as tool_call deltas with a stable id
  const stream = await client.chat.completions.create({ model: 'gemini', stream: true, messages: [{ role: 'user', content: 'weather?' }], tools: [weatherTool], tool_choice: { type: 'function', function: { name: 'get_weather' } } });
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  const calls = reassembleToolCalls(chunks);
  assert.equal(calls.length, 1);
  assert.equal(calls[0].name, 'get_weather');
  assert.deepEqual(JSON.parse(calls[0].arguments), { city: 'Paris' });
  assert.equal(modelCalls()[2].body.toolConfig.functionCallingConfig.allowedFunctionNames[0], 'get_weather');
});

test('image content becomes inlineData', T, async () => {
  const png = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex');
  const r = await client.chat.completions.create({
    model: 'gemini',
    messages: [{ role: 'user', content: [{ type: 'text', text: 'what is this?' }, { type: 'image_url', image_url: { url: `data:image/png;base64,${png.toString('base64')}` } }] }],
  });
  assert.equal(r.choices[0].message.content, `I see an image (image/png, ${png.length} bytes)`);
  assert.equal(modelCalls()[0].body.contents[0].parts[1].inlineData.mimeType, 'image/png');
});

test('embeddings through :predict (float and base64)', T, async () => {
  const r = await client.embeddings.create({ model: 'gemini-embed', input: ['one two', 'three'], dimensions: 8 });
  assert.equal(r.object, 'list');
  assert.equal(r.data.length, 2);
  assert.deepEqual(r.data[1].embedding, embeddingFor('three', 8));
  assert.equal(r.usage.prompt_tokens, 3);
  const call = modelCalls()[0];
  assert.match(call.path, /\/models\/text-embedding-005:predict$/);
  assert.equal(call.body.parameters.outputDimensionality, 8);
  const f = await client.embeddings.create({ model: 'gemini-embed', input: 'one two', encoding_format: 'float' });
  assert.deepEqual(f.data[0].embedding, embeddingFor('one two', 8));
});

test('RetryInfo.retryDelay is honoured by the router; a delay past the budget fails at once with retry-after', T, async () => {
  vx.enqueue({ throttle: '0.3s' });
  const r = await client.chat.completions.create({ model: 'gemini', messages: [{ role: 'user', content: 'after a wait' }] });
  assert.equal(r.choices[0].message.content, 'Gemini echo: after a wait');
  const calls = modelCalls();
  assert.equal(calls.length, 2);
  assert.ok(calls[1].at - calls[0].at >= 290, `the retry came ${calls[1].at - calls[0].at} ms after the 429`);
  vx.enqueue({ throttle: '600s', times: 2 });
  const res = await postJSON(gw.url, '/v1/chat/completions', { model: 'gemini', messages: [{ role: 'user', content: 'x' }] });
  assert.equal(res.status, 429);
  assert.equal(res.headers.get('retry-after'), '600');
  const j = await res.json();
  assert.equal(j.error.code, 'resource_exhausted');
  assert.equal(modelCalls().length, 3);
  vx.reset();
});

test('mid-stream failures: a reset and an in-band error become an in-band OpenAI error', T, async () => {
  vx.enqueue({ resetAfterEvents: 2, paceMs: 20 });
  const s1 = await client.chat.completions.create({ model: 'gemini', stream: true, messages: [{ role: 'user', content: 'one two three four five' }] });
  const got = [];
  await assert.rejects(async () => {
    for await (const c of s1) got.push(c);
  });
  assert.ok(got.length >= 1);
  // an event that is not JSON: the client learns the stream broke (no clean [DONE])
  vx.enqueue({ garbageAfter: 2 });
  const s3 = await client.chat.completions.create({ model: 'gemini', stream: true, messages: [{ role: 'user', content: 'one two three four five' }] });
  await assert.rejects(async () => {
    for await (const c of s3) void c;
  }, /failed mid-stream/);
  vx.enqueue({ inbandError: 2 });
  const s2 = await client.chat.completions.create({ model: 'gemini', stream: true, messages: [{ role: 'user', content: 'one two three four five' }] });
  await assert.rejects(async () => {
    for await (const c of s2) void c;
  }, /overloaded/);
});

test('failover between Vertex and Anthropic, both ways', T, async () => {
  vx.enqueue({ status: 503, error: { error: { code: 503, message: 'The service is currently unavailable.', status: 'UNAVAILABLE' } } });
  const r1 = await client.chat.completions.create({ model: 'multi', messages: [{ role: 'user', content: 'fail over' }] }).withResponse();
  assert.equal(r1.data.choices[0].message.content, 'Claude echo: fail over');
  assert.equal(r1.response.headers.get('x-cloudmux-provider'), 'anth');
  assert.equal(r1.response.headers.get('x-cloudmux-attempts'), '2');
  const anBefore = an.requests.length;
  an.enqueue({ overloaded: true });
  const s = await client.chat.completions.create({ model: 'multi-rev', stream: true, messages: [{ role: 'user', content: 'and back' }] });
  const chunks = [];
  for await (const c of s) chunks.push(c);
  assert.equal(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join(''), 'Gemini echo: and back');
  assert.equal(an.requests.length - anBefore, 1); // the 529, not retried in place: Vertex took it
});

test('no secret reaches the access log', T, async () => {
  await client.chat.completions.create({ model: 'gemini-static', messages: [{ role: 'user', content: 'log' }] });
  assert.ok(!gw.stdoutText.includes('SIMSECRET'));
  assert.ok(!gw.stdoutText.includes('ya29.sim'));
  assert.ok(!gw.stderr.includes('SIMSECRET'));
  void pub;
});
