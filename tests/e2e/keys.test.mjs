// Virtual keys and stored tenants (SQLite ledger): `cloudmux keys` and the admin API create, list
// and revoke keys that only the ledger database knows; a running gateway picks changes up through
// its refresher; the ledger records tenant and key on every usage row; stored tenants override the
// config's; keys never appear in listings or logs.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack } from './lib/stack.mjs';
import { ADMIN, SIMS, MODELS, sha256, admin, keysCli, createKey, statusWith, until } from './lib/keys.mjs';
import { runCloudmux } from './lib/gateway.mjs';

const T = { timeout: 60_000 };
let st;
const issued = []; // every key the tests saw: none may appear in the logs

before(async () => {
  st = await startStack({
    sims: SIMS,
    models: MODELS,
    routing: { max_attempts: 1 },
    configPatch: (c) => {
      c.admin_key = ADMIN;
      c.tenants = [{ name: 'acme', models: ['gpt-*'] }, { name: 'other', models: ['gpt-4o'] }];
    },
  });
});
after(async () => {
  await st?.close();
});

test('keys create (CLI): the key works, a bad key and no key get 401 in OpenAI\'s shape', T, async () => {
  const { key, id } = await createKey(st.gw.configFile, ['--tenant', 'acme', '--name', 'cli', '--rpm', '1000'], st.env);
  issued.push(key);
  await until(st.gw, key, 200, 3000);
  const sim = st.sims.oa.requests.at(-1);
  assert.notEqual(sim.headers.authorization, `Bearer ${key}`, 'the virtual key must not reach the provider');
  // a well-formed key nobody issued, a malformed one, and none at all
  const fake = `cmx-${'A'.repeat(43)}`;
  assert.equal(await statusWith(st.gw, fake), 401);
  const r = await fetch(`${st.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model":"gpt-5","messages":[]}' });
  assert.equal(r.status, 401);
  const e = await r.json();
  assert.equal(e.error.code, 'missing_api_key');
  const bad = await fetch(`${st.url}/v1/models`, { headers: { authorization: `Bearer ${fake}` } });
  assert.equal(bad.status, 401);
  const be = await bad.json();
  assert.equal(be.error.code, 'invalid_api_key');
  assert.equal(be.error.type, 'invalid_request_error');
  assert.ok(!JSON.stringify(be).includes(fake), 'the presented key is never echoed');
  // the listing knows the key by id only
  for (const format of ['table', 'json']) {
    const l = await keysCli(st.gw.configFile, ['list', '--format', format], st.env);
    assert.equal(l.code, 0, l.stderr);
    assert.ok(l.stdout.includes(id));
    assert.ok(!l.stdout.includes(key) && !l.stdout.includes(sha256(key)), `keys list --format ${format} shows the key or its hash`);
  }
  const j = JSON.parse((await keysCli(st.gw.configFile, ['list', '--format', 'json'], st.env)).stdout);
  const entry = j.data.find((k) => k.id === id);
  assert.deepEqual([entry.name, entry.tenant, entry.status, entry.rpm, entry.revoked], ['cli', 'acme', 'active', 1000, null]);
});

test('keys create refuses an unknown tenant and bad values; revoke reports an unknown id', T, async () => {
  let r = await keysCli(st.gw.configFile, ['create', '--tenant', 'nobody'], st.env);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /tenant 'nobody' is not defined/);
  r = await keysCli(st.gw.configFile, ['create', '--tenant', 'acme', '--budget', '-3'], st.env);
  assert.equal(r.code, 2);
  r = await keysCli(st.gw.configFile, ['create', '--tenant', 'acme', '--expires', '2001-01-01'], st.env);
  assert.equal(r.code, 2);
  r = await keysCli(st.gw.configFile, ['revoke', 'key_0000000000000000'], st.env);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /no key has the id/);
  const help = await runCloudmux(['help', 'keys']);
  assert.match(help.stdout, /cloudmux keys create --config FILE --tenant T/);
  assert.match((await runCloudmux(['--help'])).stdout, /keys \(create\|list\|revoke\)/);
});

test('admin API: POST /admin/v1/keys shows the key once, GET never, DELETE revokes within a second', T, async () => {
  let r = await admin(st.gw, 'POST', '/admin/v1/keys', { tenant: 'acme', name: 'api', tpm: 100000, budget: '25.50', expires: '2099-01-01' });
  assert.equal(r.status, 201, r.text);
  const { key, id } = r.body;
  issued.push(key);
  assert.match(key, /^cmx-[0-9A-Za-z]{43}$/);
  assert.deepEqual([r.body.tenant, r.body.name, r.body.budget, r.body.tpm, r.body.expires], ['acme', 'api', '25.500000', 100000, '2099-01-01T00:00:00Z']);
  await until(st.gw, key, 200, 3000);
  r = await admin(st.gw, 'GET', '/admin/v1/keys');
  assert.equal(r.status, 200);
  assert.ok(r.body.data.some((k) => k.id === id && k.tenant === 'acme' && k.name === 'api'));
  for (const k of issued) assert.ok(!r.text.includes(k) && !r.text.includes(sha256(k)));
  assert.ok(r.body.data.every((k) => k.key === undefined && k.hash === undefined));
  // errors
  r = await admin(st.gw, 'POST', '/admin/v1/keys', { tenant: 'nobody' });
  assert.equal(r.status, 400);
  assert.equal(r.body.error.type, 'invalid_request_error');
  r = await admin(st.gw, 'POST', '/admin/v1/keys', { tenant: 'acme', rpm: 'many' });
  assert.equal(r.status, 400);
  r = await admin(st.gw, 'POST', '/admin/v1/keys', { tenant: 'acme', colour: 'red' });
  assert.equal(r.status, 400);
  assert.equal(r.body.error.param, 'colour');
  r = await admin(st.gw, 'POST', '/admin/v1/keys', { tenant: 'acme' }, 'wrong-admin-key');
  assert.equal(r.status, 401);
  r = await admin(st.gw, 'DELETE', '/admin/v1/keys/key_0000000000000000');
  assert.equal(r.status, 404);
  assert.equal(r.body.error.code, 'key_not_found');
  // revoke: 401 within one second, and again is idempotent
  r = await admin(st.gw, 'DELETE', `/admin/v1/keys/${id}`);
  assert.equal(r.status, 200);
  assert.equal(r.body.already_revoked, false);
  await until(st.gw, key, 401, 1000);
  const e = await fetch(`${st.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } }).then((x) => x.json());
  assert.equal(e.error.message, 'The API key provided has been revoked.');
  r = await admin(st.gw, 'DELETE', `/admin/v1/keys/${id}`);
  assert.equal(r.status, 200);
  assert.equal(r.body.already_revoked, true);
});

test('stored tenants: validated like the config, override it, and deleting restores the config\'s', T, async () => {
  const { key } = await createKey(st.gw.configFile, ['--tenant', 'acme'], st.env);
  issued.push(key);
  await until(st.gw, key, 200, 3000, 'gpt-5');
  let r = await admin(st.gw, 'POST', '/admin/v1/tenants', { name: 'acme', models: ['gpt-4o'] });
  assert.equal(r.status, 201, r.text);
  assert.equal(r.body.overrides_config, true);
  // the stored definition wins: gpt-5 is no longer the tenant's (404 model_not_found, as OpenAI)
  await until(st.gw, key, 404, 1000, 'gpt-5');
  assert.equal(await statusWith(st.gw, key, 'gpt-4o'), 200);
  r = await admin(st.gw, 'GET', '/admin/v1/tenants');
  assert.equal(r.status, 200);
  const acme = r.body.data.find((t) => t.name === 'acme');
  assert.deepEqual([acme.source, acme.overrides_config, acme.definition.models], ['database', true, ['gpt-4o']]);
  assert.equal(r.body.data.find((t) => t.name === 'other').source, 'config');
  // the config's rules: preferred clouds inside allowed_clouds, known keys, valid names
  r = await admin(st.gw, 'POST', '/admin/v1/tenants', { name: 'bad', preferred_clouds: ['gcp'], allowed_clouds: ['aws'] });
  assert.equal(r.status, 400);
  assert.match(r.body.error.message, /preferred cloud "gcp" is not in its allowed_clouds/);
  r = await admin(st.gw, 'POST', '/admin/v1/tenants', { name: 'bad', colour: 'red' });
  assert.equal(r.status, 400);
  r = await admin(st.gw, 'POST', '/admin/v1/tenants', { name: 'bad name!' });
  assert.equal(r.status, 400);
  r = await admin(st.gw, 'POST', '/admin/v1/tenants', { name: 'env', models: ['${HOME}'] });
  assert.equal(r.status, 400);
  r = await admin(st.gw, 'POST', '/admin/v1/tenants', '{"name":');
  assert.equal(r.status, 400);
  // a tenant only the database defines can own keys
  r = await admin(st.gw, 'POST', '/admin/v1/tenants', { name: 'beta', models: ['gpt-4o'], budget: { amount: '100.00', period: 'day' }, limits: { rpm: 500 } });
  assert.equal(r.status, 201, r.text);
  r = await admin(st.gw, 'POST', '/admin/v1/keys', { tenant: 'beta' });
  assert.equal(r.status, 201, r.text);
  issued.push(r.body.key);
  await until(st.gw, r.body.key, 200, 3000, 'gpt-4o');
  const tl = await admin(st.gw, 'GET', '/admin/v1/tenants');
  assert.deepEqual(tl.body.data.find((t) => t.name === 'beta').definition, { name: 'beta', models: ['gpt-4o'], budget: { amount: '100.00', currency: 'USD', period: 'day' }, limits: { rpm: 500 } });
  // delete: the config's acme applies again
  r = await admin(st.gw, 'DELETE', '/admin/v1/tenants/acme');
  assert.equal(r.status, 200);
  assert.equal(r.body.config_applies, true);
  await until(st.gw, key, 200, 1000, 'gpt-5');
  r = await admin(st.gw, 'DELETE', '/admin/v1/tenants/other');
  assert.equal(r.status, 404);
  assert.match(r.body.error.message, /defined in the configuration file/);
});

test('usage per tenant and key: every usage row records who it ran as', T, async () => {
  const a = await createKey(st.gw.configFile, ['--tenant', 'acme', '--name', 'usage-a'], st.env);
  const b = await createKey(st.gw.configFile, ['--tenant', 'other', '--name', 'usage-b'], st.env);
  issued.push(a.key, b.key);
  await until(st.gw, a.key, 200, 3000);
  await until(st.gw, b.key, 200, 3000, 'gpt-4o');
  for (let i = 0; i < 3; i++) assert.equal(await statusWith(st.gw, a.key), 200);
  for (let i = 0; i < 2; i++) assert.equal(await statusWith(st.gw, b.key, 'gpt-4o'), 200);
  let r = await admin(st.gw, 'GET', '/admin/v1/usage?by=key');
  assert.equal(r.status, 200, r.text);
  const byKey = Object.fromEntries(r.body.rows.map((x) => [x.key, x]));
  assert.equal(byKey[a.id].requests, 4);
  assert.equal(byKey[b.id].requests, 3);
  assert.ok(Number(byKey[a.id].revenue) > 0);
  r = await admin(st.gw, 'GET', '/admin/v1/usage?by=tenant');
  const byTenant = Object.fromEntries(r.body.rows.map((x) => [x.key, x]));
  const total = r.body.rows.reduce((s, x) => s + x.requests, 0);
  assert.equal(total, st.sims.oa.requests.length, 'every request that reached the provider is on some tenant row');
  assert.ok(byTenant.acme.requests >= 4 && byTenant.other.requests >= 3);
  const cli = await runCloudmux(['ledger', 'usage', '--config', st.gw.configFile, '--by', 'tenant', '--format', 'json'], { env: st.env });
  assert.equal(cli.code, 0, cli.stderr);
  assert.deepEqual(JSON.parse(cli.stdout).rows, r.body.rows);
  r = await admin(st.gw, 'GET', '/admin/v1/usage?by=nonsense');
  assert.equal(r.status, 400);
});

test('no key ever appears in the gateway\'s logs', T, async () => {
  assert.ok(issued.length >= 5);
  const logs = st.gw.stdoutText + st.gw.stderr;
  assert.ok(logs.length > 0);
  for (const k of issued) {
    assert.ok(!logs.includes(k), 'a virtual key was logged');
    assert.ok(!logs.includes(k.slice(4, 24)), 'part of a virtual key was logged');
  }
});

test('a tenant stored through the admin API closes /v1 like a configured one (no key yet: 401)', T, async () => {
  const open = await startStack({
    sims: SIMS,
    models: MODELS,
    routing: { max_attempts: 1 },
    configPatch: (c) => {
      c.admin_key = ADMIN;
    },
  });
  try {
    const models = () => fetch(`${open.url}/v1/models`).then((r) => r.status);
    assert.equal(await models(), 200, 'open mode: no tenants, no keys');
    const r = await admin(open.gw, 'POST', '/admin/v1/tenants', { name: 'solo', models: ['gpt-4o'] });
    assert.equal(r.status, 201, r.text);
    const deadline = Date.now() + 3000;
    let status;
    while ((status = await models()) !== 401 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
    assert.equal(status, 401, 'a stored tenant requires keys from then on');
  } finally {
    await open.close();
  }
});
