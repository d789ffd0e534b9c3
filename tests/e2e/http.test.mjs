// HTTP/1.1 on raw sockets: keep-alive, pipelining, chunked request bodies, Expect: 100-continue,
// malformed requests.

import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, CLIENT_KEY } from './lib/stack.mjs';
import { RawConn, request, chunked } from './lib/rawhttp.mjs';
import { parseSSE } from '../sim/sse.mjs';

const T = { timeout: 20_000 };
let st;
const conns = [];

before(async () => {
  st = await startStack({
    sims: { oa: { flavor: 'openai', models: ['gpt-4o-2024-08-06'] } },
    models: [{ name: 'gpt-4o', deployments: [{ provider: 'oa', model: 'gpt-4o-2024-08-06', priority: 1 }] }],
    routing: { max_attempts: 1, timeout_s: 30 },
  });
});
after(async () => {
  for (const c of conns) c.close();
  await st?.close();
});
beforeEach(() => st?.reset());

async function open() {
  const c = await RawConn.open(st.gw.port);
  conns.push(c);
  return c;
}

const chatBody = (text, extra = {}) => JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: text }], ...extra });
const chatReq = (text, headers = {}, extra = {}) =>
  request('POST', '/v1/chat/completions', {
    headers: { 'content-type': 'application/json', authorization: `Bearer ${CLIENT_KEY}`, ...headers },
    body: chatBody(text, extra),
  });

test('keep-alive: three requests on one connection', T, async () => {
  const c = await open();
  await c.write(chatReq('one'));
  let r = await c.readResponse();
  assert.equal(r.status, 200, r.text);
  assert.equal(JSON.parse(r.text).choices[0].message.content, 'echo: one');
  assert.notEqual((r.headers.connection || '').toLowerCase(), 'close');

  await c.write(request('GET', '/v1/models'));
  r = await c.readResponse();
  assert.equal(r.status, 200);
  assert.equal(JSON.parse(r.text).object, 'list');

  await c.write(chatReq('three'));
  r = await c.readResponse();
  assert.equal(r.status, 200);
  assert.equal(JSON.parse(r.text).choices[0].message.content, 'echo: three');
  assert.equal(c.ended, false, 'connection still open');
  assert.deepEqual(st.violations(), []);
});

test('pipelining: two requests in one packet, responses in order', T, async () => {
  const c = await open();
  // the first is slower upstream than the second is to answer locally
  st.sims.oa.enqueue({ delayMs: 200 });
  const both = Buffer.concat([
    chatReq('first', { 'x-request-id': 'pipe-1' }),
    request('GET', '/v1/models', { headers: { 'x-request-id': 'pipe-2' } }),
  ]);
  await c.write(both);
  const r1 = await c.readResponse();
  const r2 = await c.readResponse();
  assert.equal(r1.headers['x-request-id'], 'pipe-1');
  assert.equal(r1.status, 200);
  assert.equal(JSON.parse(r1.text).choices[0].message.content, 'echo: first');
  assert.equal(r2.headers['x-request-id'], 'pipe-2');
  assert.equal(r2.status, 200);
  assert.equal(JSON.parse(r2.text).object, 'list');

  // two upstream requests pipelined
  await c.write(Buffer.concat([chatReq('alpha'), chatReq('beta')]));
  const a = await c.readResponse();
  const b = await c.readResponse();
  assert.equal(JSON.parse(a.text).choices[0].message.content, 'echo: alpha');
  assert.equal(JSON.parse(b.text).choices[0].message.content, 'echo: beta');
  assert.deepEqual(st.violations(), []);
});

test('chunked request body', T, async () => {
  const c = await open();
  const body = chatBody('chunked upload works', { seed: 42 });
  const parts = [body.slice(0, 10), body.slice(10, 40), body.slice(40)];
  await c.write(
    request('POST', '/v1/chat/completions', {
      headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
    }),
  );
  const enc = chunked(parts);
  // send the chunks in separate writes with pauses
  const pieces = enc.split(/(?<=\r\n)(?=[0-9a-f]+\r\n)/);
  for (const p of pieces) {
    await c.write(p);
    await new Promise((r) => setTimeout(r, 30));
  }
  const r = await c.readResponse();
  assert.equal(r.status, 200, r.text);
  assert.equal(JSON.parse(r.text).choices[0].message.content, 'echo: chunked upload works');
  assert.equal(st.sims.oa.lastRequest.json.seed, 42);
  assert.deepEqual(st.violations(), []);
});

test('Expect: 100-continue gets "HTTP/1.1 100 Continue", then the response', T, async () => {
  const c = await open();
  const body = chatBody('continue please');
  const head = request('POST', '/v1/chat/completions', {
    headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), expect: '100-continue' },
  });
  await c.write(head);
  const interim = await c.readResponse({ timeoutMs: 3000 });
  assert.equal(interim.status, 100);
  assert.match(interim.statusLine, /^HTTP\/1\.1 100 Continue$/);
  await c.write(body);
  const r = await c.readResponse();
  assert.equal(r.status, 200, r.text);
  assert.equal(JSON.parse(r.text).choices[0].message.content, 'echo: continue please');
  assert.deepEqual(st.violations(), []);
});

test('a bad header block -> 400 and the connection is closed', T, async () => {
  const c = await open();
  await c.write('GET /healthz HTTP/1.1\r\nHost: x\r\nThis is not a header\r\n\r\n');
  const r = await c.readResponse({ timeoutMs: 3000 });
  assert.equal(r.status, 400);
  assert.ok(await c.waitClosed(2000), 'connection closed after the 400');
});

test('a garbage request line -> 400 and close', T, async () => {
  const c = await open();
  await c.write('HELLO\x01WORLD\r\n\r\n');
  const r = await c.readResponse({ timeoutMs: 3000 });
  assert.equal(r.status, 400);
  assert.ok(await c.waitClosed(2000), 'connection closed after the 400');
  // OpenAI's error shape, a request id, and a line in the access log like any request
  assert.equal(JSON.parse(r.text).error.code, 'invalid_http');
  const id = r.headers['x-request-id'];
  assert.match(id, /^req_[0-9a-f]{24}$/);
  const line = await st.gw.waitForLog((l) => l.request_id === id);
  assert.deepEqual([line.status, line.error], [400, 'invalid_http']);
});

test('headers over server.max_header_bytes -> 431, logged with its id', T, async () => {
  const c = await open();
  await c.write(`GET /v1/models HTTP/1.1\r\nHost: x\r\nx-request-id: big-head-1\r\nx-big: ${'a'.repeat(80_000)}\r\n\r\n`);
  const r = await c.readResponse({ timeoutMs: 3000 });
  assert.equal(r.status, 431);
  assert.equal(JSON.parse(r.text).error.code, 'request_header_fields_too_large');
  assert.ok(r.headers['x-request-id']);
  const line = await st.gw.waitForLog((l) => l.request_id === r.headers['x-request-id']);
  assert.equal(line.status, 431);
});

test('raw bytes that are not UTF-8 in a URL: the error and the access log stay valid JSON', T, async () => {
  const c = await open();
  await c.write(Buffer.concat([Buffer.from('GET /v1/models/caf'), Buffer.from([0xc3, 0xa9, 0xff, 0xc0, 0xaf]), Buffer.from(' HTTP/1.1\r\nHost: x\r\nx-request-id: raw-bytes-1\r\n\r\n')]));
  const r = await c.readResponse({ timeoutMs: 3000 });
  assert.equal(r.status, 404);
  const text = new TextDecoder('utf-8', { fatal: true }).decode(r.body); // throws on invalid UTF-8
  assert.equal(JSON.parse(text).error.code, 'model_not_found');
  const line = await st.gw.waitForLog((l) => l.request_id === 'raw-bytes-1');
  assert.equal(line.path, '/v1/models/caf\u00e9\ufffd\ufffd\ufffd');
});

test('a streamed response is chunked and the connection is reusable afterwards', T, async () => {
  const c = await open();
  await c.write(chatReq('stream on a raw socket', {}, { stream: true }));
  const r = await c.readResponse();
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'], /^text\/event-stream/);
  assert.match(r.headers['transfer-encoding'] || '', /chunked/);
  const events = parseSSE(r.text);
  assert.equal(events.at(-1).data, '[DONE]');
  await c.write(request('GET', '/healthz'));
  const h = await c.readResponse();
  assert.equal(h.status, 200);
  assert.deepEqual(st.violations(), []);
});

test('Connection: close is honoured', T, async () => {
  const c = await open();
  await c.write(request('GET', '/healthz', { headers: { connection: 'close' } }));
  const r = await c.readResponse();
  assert.equal(r.status, 200);
  assert.ok(await c.waitClosed(2000), 'server closed the connection');
});
