// Distribution agreements on the request path: cloudmux with `serve --now` at several dates in
// front of simulators labelled azure, aws, gcp and openai (the maker's own API), seen through the
// official openai client, plus the admin API's matrix and check.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startSim, CLIENT_KEY } from '../sim/openai-sim.mjs';
import { startGateway, runCloudmux, writeConfig, sanitizerReport } from './lib/gateway.mjs';
import { KEYS, envVarFor, providerFor } from './lib/stack.mjs';

const T = { timeout: 30_000 };
const sims = {};
const env = {};

// gpt-6 launches on the primary (azure) on 2026-12-15; AWS has its own launch date earlier, which
// first launch overrides. gpt-realtime: the primary opted out of it on 2026-11-01, AWS launches it
// the same day. gpt-5: Azure's licence ends 2027-06-30 (inclusive). llama: not governed.
const agreementsPart = {
  maker: 'openai',
  products: [
    { name: 'gpt-5', core: true, capabilities: ['chat', 'tools', 'vision'], launches: { azure: '2026-08-07', aws: '2026-08-07', gcp: '2026-09-01', openai: '2026-08-07' } },
    { name: 'gpt-6', core: true, capabilities: ['chat', 'tools'], launches: { azure: '2026-12-15', aws: '2026-12-01', openai: '2026-12-20' } },
    { name: 'gpt-realtime', core: true, capabilities: ['chat', 'audio'], launches: { aws: '2026-11-01', openai: '2026-11-01' } },
  ],
  agreements: [
    {
      id: 'microsoft',
      versions: [
        { effective: '2019-07-22', licences: [{ licensee: 'azure', products: '*', until: '2026-10-27', exclusive: true }] },
        {
          effective: '2026-10-28',
          primary_cloud: 'azure',
          first_launch: { products: 'core', holdback_days: 0, opt_outs: [{ product: 'gpt-realtime', since: '2026-11-01' }] },
          licences: [{ licensee: 'azure', products: '*', until: '2027-06-30', exclusive: false }],
        },
      ],
    },
    { id: 'amazon', versions: [{ effective: '2026-03-01', licences: [{ licensee: 'aws', products: '*', until: '2031-02-28', exclusive: false }] }] },
    { id: 'google', versions: [{ effective: '2026-06-01', licences: [{ licensee: 'gcp', products: ['gpt-5'], until: '2027-12-31', exclusive: false }] }] },
  ],
};

const models = [
  { name: 'gpt-5', deployments: [{ provider: 'azure', model: 'gpt-5', priority: 1 }, { provider: 'aws', model: 'openai.gpt-5', priority: 2 }] },
  { name: 'gpt-6', deployments: [{ provider: 'azure', model: 'gpt-6', priority: 1 }, { provider: 'aws', model: 'openai.gpt-6', priority: 2 }, { provider: 'openai', model: 'gpt-6', priority: 3 }] },
  { name: 'gpt-6-aws', product: 'gpt-6', deployments: [{ provider: 'aws', model: 'openai.gpt-6' }] },
  { name: 'gpt-realtime', deployments: [{ provider: 'azure', model: 'gpt-realtime', priority: 1 }, { provider: 'aws', model: 'openai.gpt-realtime', priority: 2 }] },
  { name: 'llama', deployments: [{ provider: 'gcp', model: 'meta/llama-3.1-8b' }] },
];

let config;
let configFile;

before(async () => {
  sims.azure = await startSim({ name: 'azure', flavor: 'azure', apiKey: KEYS.azure, apiVersion: '2024-10-21', deployments: ['gpt-5', 'gpt-6', 'gpt-realtime'] });
  sims.aws = await startSim({ name: 'aws', flavor: 'compatible' });
  sims.gcp = await startSim({ name: 'gcp', flavor: 'compatible' });
  sims.openai = await startSim({ name: 'openai', flavor: 'openai', apiKey: KEYS.openai });
  env[envVarFor('azure')] = KEYS.azure;
  env[envVarFor('openai')] = KEYS.openai;
  config = {
    providers: [
      providerFor(sims.azure),
      providerFor(sims.aws, { cloud: 'aws', region: 'us-east-1' }),
      providerFor(sims.gcp, { cloud: 'gcp', region: 'us-central1' }),
      providerFor(sims.openai),
    ],
    models,
    routing: { max_attempts: 3 },
    ...agreementsPart,
  };
  configFile = (await writeConfig(config)).file;
});

after(async () => {
  await Promise.all(Object.values(sims).map((s) => s.close()));
});

/** A gateway whose clock is frozen at now; runs fn(gw, client) and stops it. */
async function at(now, fn) {
  for (const s of Object.values(sims)) s.reset();
  const gw = await startGateway({ config, env, args: ['--now', now] });
  const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: CLIENT_KEY, maxRetries: 0, timeout: 15_000 });
  try {
    await fn(gw, client);
  } finally {
    await gw.kill();
    assert.equal(gw.sanitizerReport(), null);
  }
  assert.deepEqual(Object.values(sims).flatMap((s) => s.violations), []);
}

const ask = (client, model) => client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] }).withResponse();
const served = () => Object.fromEntries(Object.entries(sims).map(([k, s]) => [k, s.requests.length]));

test('before the primary launch: 403 distribution_denied naming each cloud and when it may serve; no upstream is called', T, async () => {
  await at('2026-12-05T12:00:00Z', async (gw, client) => {
    await assert.rejects(ask(client, 'gpt-6'), (err) => {
      assert.ok(err instanceof OpenAI.PermissionDeniedError, `${err}`);
      assert.equal(err.status, 403);
      assert.equal(err.error.type, 'invalid_request_error');
      assert.equal(err.code, 'distribution_denied');
      assert.match(err.message, /gpt-6 has not launched on the primary cloud azure/);
      assert.match(err.message, /aws may serve it from 2026-12-15/);
      return true;
    });
    // AWS has launched gpt-6 itself, but first launch binds it to the primary
    await assert.rejects(ask(client, 'gpt-6-aws'), (err) => {
      assert.equal(err.status, 403);
      assert.equal(err.code, 'distribution_denied');
      assert.match(err.message, /aws may serve it from 2026-12-15/);
      return true;
    });
    assert.deepEqual(served(), { azure: 0, aws: 0, gcp: 0, openai: 0 });
  });
});

test('the primary launches: Azure serves first; AWS serves from the same day when Azure fails', T, async () => {
  await at('2026-12-15T00:00:00Z', async (gw, client) => {
    const a = await ask(client, 'gpt-6');
    assert.equal(a.response.headers.get('x-cloudmux-provider'), 'azure');
    assert.equal(a.response.headers.get('x-cloudmux-agreement'), 'microsoft@2026-10-28');
    const b = await ask(client, 'gpt-6-aws');
    assert.equal(b.response.headers.get('x-cloudmux-provider'), 'aws');
    // AWS served under its own licence, bound by Microsoft's first-launch term
    assert.deepEqual(b.response.headers.get('x-cloudmux-agreement').split(/,\s*/).sort(), ['amazon@2026-03-01', 'microsoft@2026-10-28']);
    sims.azure.enqueue({ status: 503 });
    const c = await ask(client, 'gpt-6');
    assert.equal(c.response.headers.get('x-cloudmux-provider'), 'aws');
    assert.equal(c.response.headers.get('x-cloudmux-attempts'), '2');
    // the maker's own API (launching 2026-12-20) was never tried
    assert.equal(sims.openai.requests.length, 0);
  });
});

test('the product the primary opted out of is served by AWS at once (and Azure, without a launch, is skipped)', T, async () => {
  await at('2026-11-01T00:00:00Z', async (gw, client) => {
    const r = await ask(client, 'gpt-realtime');
    assert.equal(r.response.headers.get('x-cloudmux-provider'), 'aws');
    assert.equal(r.response.headers.get('x-cloudmux-attempts'), '1');
    assert.equal(sims.azure.requests.length, 0);
    assert.equal(sims.aws.requests[0].json.model, 'openai.gpt-realtime');
  });
  // the day before the opt-out and AWS's launch: nobody may serve it
  await at('2026-10-31T23:59:59Z', async (gw, client) => {
    await assert.rejects(ask(client, 'gpt-realtime'), (err) => err.status === 403 && err.code === 'distribution_denied');
  });
});

test("Azure serves through the last day of its licence and is skipped the day after", T, async () => {
  await at('2027-06-30T23:59:59Z', async (gw, client) => {
    const r = await ask(client, 'gpt-5');
    assert.equal(r.response.headers.get('x-cloudmux-provider'), 'azure');
  });
  await at('2027-07-01T00:00:00Z', async (gw, client) => {
    const r = await ask(client, 'gpt-5');
    assert.equal(r.response.headers.get('x-cloudmux-provider'), 'aws');
    assert.equal(r.response.headers.get('x-cloudmux-attempts'), '1');
    assert.equal(sims.azure.requests.length, 0);
    // AWS serves under its own licence, still bound by Microsoft's first-launch term
    assert.equal(r.response.headers.get('x-cloudmux-agreement'), 'microsoft@2026-10-28, amazon@2026-03-01');
  });
});

test('the exclusive licence shuts AWS out until the amendment; an ungoverned model is always served', T, async () => {
  await at('2026-10-27T12:00:00Z', async (gw, client) => {
    for (let i = 0; i < 3; i++) sims.azure.enqueue({ status: 503 });
    await assert.rejects(ask(client, 'gpt-5'), (err) => err.status === 503);
    assert.equal(sims.azure.requests.length, 3);
    assert.equal(sims.aws.requests.length, 0, 'aws must not be tried while azure is exclusive');
    const r = await ask(client, 'llama');
    assert.equal(r.response.headers.get('x-cloudmux-provider'), 'gcp');
    assert.equal(r.response.headers.get('x-cloudmux-agreement'), null);
  });
});

test('no request header moves the clock', T, async () => {
  await at('2026-12-05T12:00:00Z', async (gw, client) => {
    const r = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${CLIENT_KEY}`, date: 'Wed, 01 Jan 2031 00:00:00 GMT', 'x-cloudmux-now': '2031-01-01T00:00:00Z' },
      body: JSON.stringify({ model: 'gpt-6', messages: [{ role: 'user', content: 'hi' }] }),
    });
    assert.equal(r.status, 403);
    assert.equal((await r.json()).error.code, 'distribution_denied');
  });
});

test('GET /admin/v1/agreements/matrix equals `agreements matrix --format json` at the same time', T, async () => {
  await at('2026-12-05T12:00:00Z', async (gw) => {
    for (const when of ['2026-12-05', '2026-12-15T00:00:00Z', '2027-07-01']) {
      const r = await fetch(`${gw.url}/admin/v1/agreements/matrix?at=${encodeURIComponent(when)}`);
      assert.equal(r.status, 200);
      const api = await r.json();
      const cli = await runCloudmux(['agreements', 'matrix', '--config', configFile, '--at', when, '--format', 'json'], { env });
      assert.equal(cli.code, 0, cli.stderr);
      assert.equal(sanitizerReport(cli.stderr), null);
      assert.deepEqual(api, JSON.parse(cli.stdout));
    }
    // without at: the gateway's (frozen) clock
    const now = await (await fetch(`${gw.url}/admin/v1/agreements/matrix`)).json();
    assert.equal(now.at, '2026-12-05T12:00:00Z');
    const cell = now.cells.find((c) => c.product === 'gpt-6' && c.cloud === 'aws');
    assert.equal(cell.decision, 'denied');
    assert.equal(cell.reason, 'awaiting_primary_launch');
    assert.ok(cell.next_change.startsWith('2026-12-15'));
  });
});

test('GET /admin/v1/agreements/check: one decision as JSON; bad parameters are 400/404 in OpenAI shape', T, async () => {
  await at('2026-12-05T12:00:00Z', async (gw) => {
    const get = async (q) => {
      const r = await fetch(`${gw.url}/admin/v1/agreements/check?${q}`);
      return { status: r.status, body: await r.json() };
    };
    let r = await get('model=gpt-6-aws&cloud=aws');
    assert.equal(r.status, 200);
    assert.equal(r.body.product, 'gpt-6');
    assert.equal(r.body.decision, 'denied');
    assert.equal(r.body.reason, 'awaiting_primary_launch');
    assert.ok(r.body.may_serve_from.startsWith('2026-12-15'));
    r = await get('product=gpt-6&cloud=aws&at=2026-12-15');
    assert.equal(r.body.decision, 'allowed');
    r = await get('product=gpt-realtime&cloud=aws&capability=audio&at=2026-11-01');
    assert.equal(r.body.decision, 'allowed');
    r = await get('model=llama&cloud=gcp');
    assert.equal(r.body.governed, false);
    assert.equal(r.body.decision, 'allowed');
    r = await get('product=gpt-6');
    assert.equal(r.status, 400);
    assert.equal(r.body.error.param, 'cloud');
    r = await get('product=gpt-6&model=gpt-6&cloud=aws');
    assert.equal(r.status, 400);
    r = await get('product=gpt-6&cloud=aws&at=yesterday');
    assert.equal(r.status, 400);
    assert.equal(r.body.error.param, 'at');
    r = await get('product=gpt-6&cloud=aws&at=%ZZ');
    assert.equal(r.status, 400);
    r = await get('product=gpt-9&cloud=aws');
    assert.equal(r.status, 404);
    assert.match(r.body.error.message, /gpt-9/);
    const post = await fetch(`${gw.url}/admin/v1/agreements/check?product=gpt-6&cloud=aws`, { method: 'POST' });
    assert.equal(post.status, 405);
  });
});

test('the admin agreement routes need the admin key when one is set', T, async () => {
  const saved = config.admin_key;
  config.admin_key = '${CMX_E2E_ADMIN}';
  try {
    const gw = await startGateway({ config, env: { ...env, CMX_E2E_ADMIN: 'adm-0123456789abcdef' } });
    try {
      let r = await fetch(`${gw.url}/admin/v1/agreements/matrix`);
      assert.equal(r.status, 401);
      r = await fetch(`${gw.url}/admin/v1/agreements/matrix`, { headers: { authorization: 'Bearer adm-0123456789abcdef' } });
      assert.equal(r.status, 200);
    } finally {
      await gw.kill();
    }
  } finally {
    if (saved === undefined) delete config.admin_key;
    else config.admin_key = saved;
  }
});
