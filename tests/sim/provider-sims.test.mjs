// The Vertex and Anthropic simulators refuse what the real services refuse, so the e2e tests
// that pass through them can fail: a JWT signed with another key, a wrong kid or scope, a
// missing or stale bearer token, OpenAI-shaped bodies, missing headers.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { SignJWT } from 'jose';
import { startVertexSim } from './vertex-sim.mjs';
import { startAnthropicSim } from './anthropic-sim.mjs';

const EMAIL = 'sa@p.iam.gserviceaccount.com';
let vx, an, good, other;

before(async () => {
  good = generateKeyPairSync('rsa', { modulusLength: 2048 });
  other = generateKeyPairSync('rsa', { modulusLength: 2048 });
  vx = await startVertexSim({ project: 'p', region: 'us-central1', publicKey: good.publicKey, clientEmail: EMAIL, kid: 'k1' });
  an = await startAnthropicSim({ apiKey: 'ak' });
});
after(async () => {
  await vx?.close();
  await an?.close();
});

async function assertion({ key = good.privateKey, kid = 'k1', scope = 'https://www.googleapis.com/auth/cloud-platform', aud = vx.tokenUri, life = 3600 } = {}) {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ scope }).setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid }).setIssuer(EMAIL).setAudience(aud).setIssuedAt(now).setExpirationTime(now + life).sign(key);
}

async function exchange(jwt) {
  const res = await fetch(vx.tokenUri, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: jwt }) });
  return { status: res.status, body: await res.json() };
}

const gen = (token, body, path = '/v1/projects/p/locations/us-central1/publishers/google/models/g:generateContent') =>
  fetch(`${vx.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify(body) });

test('vertex token endpoint verifies the assertion', async () => {
  for (const bad of [{ key: other.privateKey }, { kid: 'nope' }, { scope: 'x' }, { aud: 'https://elsewhere/token' }, { life: 7200 }]) {
    vx.reset();
    const r = await exchange(await assertion(bad));
    assert.equal(r.status, 400, JSON.stringify(bad));
    assert.equal(vx.violations.length, 1);
  }
  vx.reset();
  const ok = await exchange(await assertion());
  assert.equal(ok.status, 200);
  assert.match(ok.body.access_token, /^ya29\.sim-/);
  assert.deepEqual(vx.violations, []);
  const body = { contents: [{ role: 'user', parts: [{ text: 'hi' }] }] };
  assert.equal((await gen(ok.body.access_token, body)).status, 200);
  assert.equal((await gen('ya29.forged', body)).status, 401);
  vx.revokeAll();
  assert.equal((await gen(ok.body.access_token, body)).status, 401);
  assert.equal(vx.violations.length, 2);
});

test('vertex model endpoint checks the body shape', async () => {
  vx.reset();
  const { body: t } = await exchange(await assertion());
  for (const bad of [
    { model: 'g', messages: [{ role: 'user', content: 'hi' }] },
    { contents: [{ role: 'assistant', parts: [{ text: 'x' }] }] },
    { contents: [{ role: 'user', parts: [{ functionResponse: { name: 'f', response: 'str' } }] }] },
    { contents: [{ role: 'user', parts: [{ text: 'x' }] }], generationConfig: { max_tokens: 5 } },
    { contents: [{ role: 'user', parts: [{ text: 'x' }] }], tools: [{ functionDeclarations: [{ name: 'f', parameters: {} }] }] },
  ]) {
    vx.reset();
    const r = await gen(t.access_token, bad);
    assert.equal(r.status, 400, JSON.stringify(bad));
    assert.ok(vx.violations.length >= 1);
  }
  vx.reset();
  const r = await gen(t.access_token, { contents: [{ role: 'user', parts: [{ text: 'x' }] }] }, '/v1/projects/p/locations/us-central1/publishers/google/models/g:streamGenerateContent');
  await r.text();
  assert.ok(vx.violations.some((v) => /alt=sse/.test(v)));
  vx.reset();
});

test('anthropic checks headers and body shape', async () => {
  const post = (headers, body) => fetch(`${an.url}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  const good = { model: 'c', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] };
  const H = { 'x-api-key': 'ak', 'anthropic-version': '2023-06-01' };
  assert.equal((await post(H, good)).status, 200);
  assert.deepEqual(an.violations, []);
  for (const [h, b] of [
    [{ 'x-api-key': 'wrong', 'anthropic-version': '2023-06-01' }, good],
    [{ 'x-api-key': 'ak' }, good],
    [H, { ...good, max_tokens: undefined }],
    [H, { ...good, messages: [{ role: 'system', content: 'x' }, { role: 'user', content: 'y' }] }],
    [H, { ...good, messages: [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 'nope', content: 'x' }] }] }],
    [H, { ...good, stream_options: { include_usage: true } }],
    [H, { ...good, messages: [{ role: 'user', content: 'a' }, { role: 'user', content: 'b' }] }],
  ]) {
    an.reset();
    const r = await post(h, b);
    assert.notEqual(r.status, 200, JSON.stringify(b));
    assert.ok(an.violations.length >= 1);
  }
  an.reset();
});
