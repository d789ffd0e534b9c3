// The ledger on SQLite (the embedded default): every request metered from the usage the upstream
// reported (cached and reasoning tokens, streamed and not), revenue-share statements equal to what
// this test computes on its own, caps held exactly under 64 concurrent clients, and nothing lost on
// SIGTERM under load.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { dirname, join } from 'node:path';
import { startStack } from './lib/stack.mjs';
import { writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { runCloudmux, toYAML } from './lib/gateway.mjs';
import { waitUntil } from '../sim/openai-sim.mjs';
import {
  NOW, PERIOD, PRICES, COST_AZ, fmt, micros, revenueOf, shareOf, ledgerModels, ledgerPatch, ledgerJSON, pool, chat,
} from './lib/ledger.mjs';

const run = promisify(execFile);
const T = { timeout: 120_000 };
const ADMIN = 'admin-key-for-ledger-tests';

const SIMS = {
  az: { flavor: 'azure', v1: true, deployments: ['gpt5-prod'] },
  oa: { flavor: 'openai', models: ['gpt-5'] },
  local: { flavor: 'compatible', models: ['llama-3.1-8b'] },
};

async function sqlite(db, sql) {
  const { stdout } = await run('sqlite3', ['-batch', '-noheader', '-separator', '\t', db, sql]);
  return stdout.split('\n').filter((l) => l !== '').map((l) => l.split('\t'));
}

test('statement and usage equal an independent computation (stream and not, cached and reasoning tokens)', T, async () => {
  const CAP = '0.0003';
  const st = await startStack({
    sims: SIMS,
    models: ledgerModels(),
    routing: { max_attempts: 1 },
    args: ['--now', NOW],
    configPatch: (c) => {
      ledgerPatch({ cap: CAP })(c);
      c.admin_key = ADMIN;
    },
  });
  try {
    const plan = [];
    for (let i = 0; i < 14; i++) {
      const sim = i % 3 === 2 ? 'oa' : 'az';
      plan.push({
        sim,
        model: sim === 'oa' ? 'gpt-5-direct' : 'gpt-5',
        stream: i % 2 === 1,
        includeUsage: i % 4 === 1,
        cachedTokens: (i * 3) % 7,
        reasoningTokens: (i % 4) * 5,
        text: `hello ledger number ${i} ${'word '.repeat(i)}`,
      });
    }
    const seen = [];
    for (const p of plan) {
      st.sims[p.sim].enqueue({ cachedTokens: p.cachedTokens, reasoningTokens: p.reasoningTokens });
      const r = await chat(st.client, p.model, p);
      const usage = st.sims[p.sim].requests.at(-1).answer.usage;
      if (!p.stream || p.includeUsage) assert.deepEqual(r.usage.prompt_tokens, usage.prompt_tokens);
      seen.push({ ...p, usage });
    }
    // an upstream that reports no usage: estimated and flagged, never billed as reported
    st.sims.local.enqueue({ noUsage: true });
    await chat(st.client, 'llama', { text: 'no usage here' });
    assert.deepEqual(st.violations(), []);

    // the independent computation: revenue per request, shares, the cap split in request order
    let msAcc = 0n;
    const ms = { base: 0n, share: 0n, accrued: 0n, over: 0n, n: 0 };
    const rs = { base: 0n, share: 0n, n: 0 };
    const byProvider = {};
    for (const s of seen) {
      const rev = revenueOf(s.usage, PRICES[s.sim]);
      const share = shareOf(rev, '0.2');
      const accrued = share < micros(CAP) - msAcc ? share : micros(CAP) - msAcc;
      msAcc += accrued;
      ms.base += rev;
      ms.share += share;
      ms.accrued += accrued;
      ms.over += share - accrued;
      ms.n++;
      if (s.sim === 'az') {
        rs.base += rev;
        rs.share += shareOf(rev, '0.075');
        rs.n++;
      }
      const g = (byProvider[s.sim] ??= { requests: 0, prompt: 0, completion: 0, cached: 0, reasoning: 0, revenue: 0n, cost: 0n });
      g.requests++;
      g.prompt += s.usage.prompt_tokens;
      g.completion += s.usage.completion_tokens;
      g.cached += s.usage.prompt_tokens_details.cached_tokens;
      g.reasoning += s.usage.completion_tokens_details.reasoning_tokens;
      g.revenue += rev;
      if (s.sim === 'az') g.cost += revenueOf(s.usage, COST_AZ);
    }
    assert.ok(ms.share > micros(CAP), 'the plan must cross the cap');
    assert.ok(seen.some((s) => s.usage.prompt_tokens_details.cached_tokens > 0 && s.usage.completion_tokens_details.reasoning_tokens > 0));

    // the admin API (it reads what the gateway has queued so far)
    const adm = await fetch(`${st.url}/admin/v1/statements?payee=microsoft&period=${PERIOD}`, { headers: { authorization: `Bearer ${ADMIN}` } });
    assert.equal(adm.status, 200);
    const admStmt = await adm.json();
    const admUsage = await (await fetch(`${st.url}/admin/v1/usage?period=${PERIOD}&by=cloud`, { headers: { authorization: `Bearer ${ADMIN}` } })).json();
    // a bad query names its parameter (OpenAI's error shape)
    const bad = async (path) => {
      const r = await fetch(`${st.url}${path}`, { headers: { authorization: `Bearer ${ADMIN}` } });
      assert.equal(r.status, 400, path);
      const { error } = await r.json();
      assert.equal(error.code, 'invalid_query', path);
      assert.equal(error.type, 'invalid_request_error', path);
      return error.param;
    };
    assert.equal(await bad('/admin/v1/statements?payee=microsoft&period=2026-13'), 'period');
    assert.equal(await bad('/admin/v1/statements?payee=microsoft&period=2026-02-30'), 'period');
    assert.equal(await bad('/admin/v1/statements?period=2026-11'), 'payee');
    assert.equal(await bad('/admin/v1/statements?payee=&period=2026-11'), 'payee');
    assert.equal(await bad('/admin/v1/usage?period=2026-11&by=hash'), 'by');
    assert.equal((await fetch(`${st.url}/admin/v1/statements?payee=microsoft`)).status, 401);

    assert.equal(await st.gw.stop('SIGTERM'), 0);
    const cfg = st.gw.configFile;
    const stmt = await ledgerJSON(cfg, ['statement', '--payee', 'microsoft', '--period', PERIOD], st.env);
    assert.deepEqual(admStmt, stmt, 'the admin API and the CLI agree');
    assert.equal(stmt.lines.length, 1);
    const l = stmt.lines[0];
    assert.deepEqual(
      { agreement: l.agreement, rate: l.rate, revenue_base: l.revenue_base, share: l.share, accrued: l.accrued, over_cap: l.over_cap, cap: l.cap, cap_remaining: l.cap_remaining, requests: l.requests },
      { agreement: 'ms@2026-01-01', rate: '0.2', revenue_base: fmt(ms.base), share: fmt(ms.share), accrued: fmt(ms.accrued), over_cap: fmt(ms.over), cap: fmt(micros(CAP)), cap_remaining: '0.000000', requests: ms.n },
    );
    assert.equal(l.accrued, '0.000300');
    assert.deepEqual(stmt.totals, { revenue_base: fmt(ms.base), share: fmt(ms.share), accrued: fmt(ms.accrued), over_cap: fmt(ms.over), requests: ms.n });
    // over-cap = sum of shares - cap
    assert.equal(micros(l.over_cap), micros(l.share) - micros(CAP));

    const resell = await ledgerJSON(cfg, ['statement', '--payee', 'azure-resell', '--period', PERIOD], st.env);
    assert.equal(resell.lines.length, 1);
    assert.equal(resell.lines[0].revenue_base, fmt(rs.base));
    assert.equal(resell.lines[0].accrued, fmt(rs.share));
    assert.equal(resell.lines[0].over_cap, '0.000000');
    assert.equal(resell.lines[0].cap, null);
    assert.equal(resell.lines[0].requests, rs.n);
    // another period: nothing
    assert.deepEqual((await ledgerJSON(cfg, ['statement', '--payee', 'microsoft', '--period', '2026-10'], st.env)).lines, []);

    // CSV: the same numbers as exact decimals
    const csv = await runCloudmux(['ledger', 'statement', '--config', cfg, '--payee', 'microsoft', '--period', PERIOD, '--format', 'csv'], { env: st.env });
    assert.equal(csv.code, 0, csv.stderr);
    const total = csv.stdout.trim().split('\r\n').at(-1).split(',');
    assert.deepEqual(total.slice(4, 8), [fmt(ms.base), fmt(ms.share), fmt(ms.accrued), fmt(ms.over)]);
    const table = await runCloudmux(['ledger', 'statement', '--config', cfg, '--payee', 'microsoft'], { env: st.env });
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /ms@2026-01-01/);

    // usage by provider: tokens as the upstreams reported them, revenue and cost
    const usage = await ledgerJSON(cfg, ['usage', '--period', PERIOD, '--by', 'provider'], st.env);
    const rows = Object.fromEntries(usage.rows.map((r) => [r.key, r]));
    for (const [sim, g] of Object.entries(byProvider)) {
      assert.deepEqual(
        { requests: rows[sim].requests, prompt: rows[sim].prompt_tokens, completion: rows[sim].completion_tokens, cached: rows[sim].cached_tokens, reasoning: rows[sim].reasoning_tokens, estimated: rows[sim].estimated, revenue: rows[sim].revenue, cost: rows[sim].cost },
        { requests: g.requests, prompt: g.prompt, completion: g.completion, cached: g.cached, reasoning: g.reasoning, estimated: 0, revenue: fmt(g.revenue), cost: fmt(g.cost) },
      );
    }
    assert.equal(rows.local.requests, 1);
    assert.equal(rows.local.estimated, 1);
    assert.ok(rows.local.prompt_tokens > 0);
    const byCloud = Object.fromEntries(admUsage.rows.map((r) => [r.key, r.requests]));
    assert.deepEqual(byCloud, { azure: byProvider.az.requests, openai: byProvider.oa.requests, onprem: 1 });

    // the record itself: agreement versions in force, model, product, status, stream flag
    const db = join(dirname(cfg), 'cloudmux.db');
    const recs = await sqlite(db, "SELECT provider, product, agreements, status, stream, cloud, region FROM usage ORDER BY ts_ms, request_id");
    assert.equal(recs.length, seen.length + 1);
    const azRow = recs.find((r) => r[0] === 'az');
    assert.deepEqual(azRow.slice(1, 4), ['gpt-5', 'ms@2026-01-01', '200']);
    assert.equal(recs.find((r) => r[0] === 'local')[1], '');
    assert.equal(recs.filter((r) => r[4] === '1').length, seen.filter((s) => s.stream).length);
    // each accrual row links to a usage record
    const orphans = await sqlite(db, 'SELECT COUNT(*) FROM accruals a LEFT JOIN usage u ON u.record_id = a.record_id WHERE u.record_id IS NULL');
    assert.equal(orphans[0][0], '0');
  } finally {
    await st.close();
  }
});

/** Bytes of generated text in chunks / messages as written on the wire (escapes undecoded). */
function textBytes(choices) {
  const raw = (v) => (typeof v === 'string' ? JSON.stringify(v).length - 2 : 0);
  let n = 0;
  for (const ch of choices) {
    const d = ch.delta ?? ch.message ?? {};
    n += raw(d.content) + raw(d.reasoning_content) + raw(d.refusal);
    for (const tc of d.tool_calls ?? []) n += raw(tc.function?.arguments);
  }
  return n;
}

test('streams that end early, failures after tokens, error answers, no usage: each metered once, estimated from the text relayed', T, async () => {
  const st = await startStack({
    sims: SIMS,
    models: ledgerModels(),
    routing: { max_attempts: 1 },
    args: ['--now', NOW],
    configPatch: ledgerPatch({ cap: '1000' }),
  });
  try {
    const want = {};
    const text = 'alpha beta gamma delta epsilon zeta eta theta iota kappa';
    const sent = (sim) => st.sims[sim].requests.at(-1).events.filter((e) => e !== '[DONE]').map((e) => JSON.parse(e));

    // 1. the client goes away after 3 chunks while the upstream holds the stream open: 499
    st.sims.oa.enqueue({ hangAfterChunks: 3 });
    const s = await st.client.chat.completions.create(
      { model: 'gpt-5-direct', messages: [{ role: 'user', content: text }], stream: true },
      { headers: { 'x-request-id': 'cut-by-client' } },
    );
    const got = [];
    for await (const ch of s) {
      got.push(ch);
      if (got.length === 3) break; // the SDK aborts the request
    }
    assert.deepEqual(got.map((c) => c.choices), sent('oa').map((c) => c.choices), 'the client saw what the upstream sent');
    const cut = textBytes(got.flatMap((c) => c.choices));
    assert.ok(cut > 0);
    want['cut-by-client'] = { status: '499', stream: '1', estimated: '1', completion: Math.ceil(cut / 4) };
    // the gateway gives the upstream stream up when its client has gone
    await waitUntil(() => st.sims.oa.closedEarly.length === 1, 5000, 'the upstream stream closed');

    // 2. the upstream connection is reset after 4 chunks: an in-band error after the 200
    st.sims.az.enqueue({ resetAfterChunks: 4 });
    const s2 = await st.client.chat.completions.create(
      { model: 'gpt-5', messages: [{ role: 'user', content: text }], stream: true },
      { headers: { 'x-request-id': 'reset-mid-stream' } },
    );
    const got2 = [];
    await assert.rejects(async () => {
      for await (const ch of s2) got2.push(ch);
    }, /failed mid-stream/);
    const reset = textBytes(sent('az').flatMap((c) => c.choices ?? []));
    assert.equal(textBytes(got2.flatMap((c) => c.choices)), reset);
    assert.ok(reset > 0);
    want['reset-mid-stream'] = { status: '200', stream: '1', estimated: '1', completion: Math.ceil(reset / 4) };

    // 3. an upstream error answer: recorded, with zero tokens (nothing was produced)
    st.sims.oa.enqueue({ status: 500 });
    await assert.rejects(chat(st.client, 'gpt-5-direct', { id: 'upstream-500', text }), (e) => e.status === 500);
    want['upstream-500'] = { status: '500', stream: '0', estimated: '0', completion: 0, prompt: 0 };

    // 4. a server that reports no usage: the completion from the answer's text, not its JSON
    st.sims.local.enqueue({ noUsage: true });
    const r4 = await st.client.chat.completions.create(
      { model: 'llama', messages: [{ role: 'user', content: text }] },
      { headers: { 'x-request-id': 'no-usage-chat' } },
    );
    assert.equal(r4.usage, undefined);
    want['no-usage-chat'] = { status: '200', stream: '0', estimated: '1', completion: Math.ceil(textBytes(r4.choices) / 4) };
    assert.ok(want['no-usage-chat'].completion > 0);

    // 5. embeddings without usage: no completion tokens at all (a vector is not output text)
    st.sims.local.enqueue({ noUsage: true });
    const e5 = await st.client.embeddings.create({ model: 'llama', input: text }, { headers: { 'x-request-id': 'no-usage-embed' } });
    assert.equal(e5.data.length, 1);
    want['no-usage-embed'] = { status: '200', stream: '0', estimated: '1', completion: 0 };
    assert.deepEqual(st.violations(), []);

    // SIGTERM drains what is queued
    assert.equal(await st.gw.stop('SIGTERM'), 0);
    const db = join(dirname(st.gw.configFile), 'cloudmux.db');
    const rows = await sqlite(db, 'SELECT request_id, status, stream, estimated, prompt_tokens, completion_tokens, revenue_micros, provider FROM usage ORDER BY ts_ms');
    assert.deepEqual(rows.map((r) => r[0]).sort(), Object.keys(want).sort(), 'one record each');
    for (const [id, status, stream, estimated, prompt, completion, revenue, provider] of rows) {
      const w = want[id];
      assert.deepEqual({ status, stream, estimated, completion: Number(completion) }, { status: w.status, stream: w.stream, estimated: w.estimated, completion: w.completion }, id);
      if (w.prompt !== undefined) assert.equal(Number(prompt), w.prompt, id);
      else assert.ok(Number(prompt) > 0, `${id}: the prompt is estimated from the request`);
      // estimated tokens are billed at the deployment's price like reported ones
      const usage = { prompt_tokens: Number(prompt), completion_tokens: Number(completion) };
      assert.equal(BigInt(revenue), revenueOf(usage, PRICES[provider]), id);
    }
  } finally {
    await st.close();
  }
});

test('64 concurrent clients against a capped term: the accrued total equals the cap exactly', T, async () => {
  const CAP = '0.004';
  const st = await startStack({
    sims: { az: SIMS.az, oa: SIMS.oa },
    models: ledgerModels({ withLocal: false }),
    routing: { max_attempts: 1 },
    args: ['--now', NOW],
    workers: 2,
    configPatch: ledgerPatch({ cap: CAP }),
  });
  try {
    const N = 256;
    await pool(N, 64, (i) => chat(st.client, i % 2 ? 'gpt-5' : 'gpt-5-direct', { stream: i % 4 === 1, text: `concurrent ${i} ${'x '.repeat(i % 9)}` }));
    assert.deepEqual(st.violations(), []);
    let shares = 0n;
    for (const sim of ['az', 'oa']) {
      for (const r of st.sims[sim].requests) shares += shareOf(revenueOf(r.answer.usage, PRICES[sim]), '0.2');
    }
    assert.ok(shares > micros(CAP), 'the load must cross the cap');
    assert.equal(await st.gw.stop('SIGTERM'), 0);
    const stmt = await ledgerJSON(st.gw.configFile, ['statement', '--payee', 'microsoft', '--period', PERIOD], st.env);
    assert.equal(stmt.totals.requests, N);
    assert.equal(stmt.totals.accrued, '0.004000');
    assert.equal(stmt.totals.share, fmt(shares));
    assert.equal(stmt.totals.over_cap, fmt(shares - micros(CAP)));
    const db = join(dirname(st.gw.configFile), 'cloudmux.db');
    const bad = await sqlite(db, "SELECT COUNT(*) FROM accruals WHERE payee = 'microsoft' AND (accrued_micros < 0 OR over_cap_micros < 0 OR accrued_micros + over_cap_micros <> amount_micros)");
    assert.equal(bad[0][0], '0');
    const split = await sqlite(db, "SELECT COUNT(*) FROM accruals WHERE payee = 'microsoft' AND accrued_micros > 0 AND over_cap_micros > 0");
    assert.ok(Number(split[0][0]) <= 1, 'at most one accrual is split at the cap');
    const capRow = await sqlite(db, "SELECT cap_micros, accrued_micros FROM caps WHERE payee = 'microsoft'");
    assert.deepEqual(capRow, [['4000', '4000']]);
  } finally {
    await st.close();
  }
});

test('SIGTERM under load loses nothing: answered 200 == usage rows', T, async () => {
  const st = await startStack({
    sims: { az: { ...SIMS.az, quirks: { delayMs: 15 } }, oa: { ...SIMS.oa, quirks: { delayMs: 15 } } },
    models: ledgerModels({ withLocal: false }),
    routing: { max_attempts: 1 },
    args: ['--now', NOW],
    configPatch: ledgerPatch({ cap: '1000' }),
  });
  try {
    let ok = 0;
    let failed = 0;
    let stop = false;
    const client = st.sdk({ timeout: 20_000 });
    const loop = async (k) => {
      for (let i = 0; !stop; i++) {
        try {
          await chat(client, (k + i) % 2 ? 'gpt-5' : 'gpt-5-direct', { stream: (k + i) % 3 === 0, includeUsage: true });
          ok++;
        } catch {
          failed++;
          if (!st.gw.running()) stop = true;
          await new Promise((r) => setTimeout(r, 5));
        }
      }
    };
    const clients = Array.from({ length: 32 }, (_, k) => loop(k));
    // let the load build up (no timing is asserted), then SIGTERM while requests are in flight
    while (ok < 150) await new Promise((r) => setTimeout(r, 10));
    const code = await st.gw.stop('SIGTERM', 30_000);
    stop = true;
    await Promise.all(clients);
    assert.equal(code, 0);
    assert.ok(ok >= 150);
    const usage = await ledgerJSON(st.gw.configFile, ['usage'], st.env);
    assert.equal(usage.rows[0].requests, ok, `answered 200: ${ok}, failed: ${failed}`);
  } finally {
    await st.close();
  }
});

test('SIGHUP: what is queued is kept, the running ledger too (a new url takes a restart)', T, async () => {
  const st = await startStack({
    sims: { oa: SIMS.oa },
    models: [ledgerModels({ withLocal: false })[1]],
    routing: { max_attempts: 1 },
    args: ['--now', NOW],
    configPatch: ledgerPatch({ cap: '1' }),
  });
  try {
    await pool(20, 4, () => chat(st.client, 'gpt-5-direct'));
    st.config.ledger = 'sqlite://elsewhere.db';
    await writeFile(st.gw.configFile, toYAML(st.config));
    st.gw.process.kill('SIGHUP');
    await waitUntil(() => /config reloaded/.test(st.gw.stderr), 5000, 'the reload');
    assert.match(st.gw.stderr, /a new ledger url takes a restart/);
    await pool(20, 4, () => chat(st.client, 'gpt-5-direct'));
    assert.equal(await st.gw.stop('SIGTERM'), 0);
    st.config.ledger = undefined;
    await writeFile(st.gw.configFile, toYAML(st.config));
    const usage = await ledgerJSON(st.gw.configFile, ['usage', '--by', 'model'], st.env);
    assert.deepEqual(usage.rows.map((r) => [r.key, r.requests]), [['gpt-5-direct', 40]]);
  } finally {
    await st.close();
  }
});

test('ledger: off meters nothing; bad arguments are usage errors', T, async () => {
  const st = await startStack({
    sims: { oa: SIMS.oa },
    models: [{ ...ledgerModels({ withLocal: false })[1], product: undefined }],
    routing: { max_attempts: 1 },
    configPatch: (c) => {
      c.ledger = 'off';
    },
  });
  try {
    await chat(st.client, 'gpt-5-direct');
    assert.equal(await st.gw.stop('SIGTERM'), 0);
    const r = await runCloudmux(['ledger', 'usage', '--config', st.gw.configFile], { env: st.env });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /ledger is off/);
    const bad = await runCloudmux(['ledger', 'statement', '--config', st.gw.configFile], { env: st.env });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--payee/);
    // an option without its value does not take the next option as one
    const noValue = await runCloudmux(['ledger', 'usage', '--period', '--config', st.gw.configFile], { env: st.env });
    assert.equal(noValue.code, 2);
    assert.match(noValue.stderr, /--period needs a value/);
    // a report never creates a ledger: a wrong path is an error, not "no usage"
    const elsewhere = join(dirname(st.gw.configFile), 'other.yaml');
    await writeFile(elsewhere, toYAML({ ...st.config, ledger: 'sqlite://nowhere.db' }));
    const missing = await runCloudmux(['ledger', 'usage', '--config', elsewhere], { env: st.env });
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no ledger at .*nowhere\.db/);
    assert.equal(existsSync(join(dirname(st.gw.configFile), 'nowhere.db')), false);
  } finally {
    await st.close();
  }
});

