// A ledger written by an older cloudmux is migrated in place when a newer one opens it: the rows of
// schema version 3 (wide usage and accrual rows) become version 4 (dimension and term ids, views
// with the version-3 columns), and statements, usage reports and the views read the same numbers as
// before. Run against SQLite and against a PostgreSQL server the test starts itself.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startPostgres } from './lib/pg.mjs';
import { ledgerJSON } from './lib/ledger.mjs';

const run = promisify(execFile);
const T = { timeout: 120_000 };

// Migrations 1-3 exactly as released (src/ledger/store.c; a released migration never changes).
const V3 = (withoutRowid) => `
CREATE TABLE ledger_schema (version INTEGER NOT NULL);
CREATE TABLE usage ( record_id TEXT PRIMARY KEY, request_id TEXT NOT NULL, ts_ms BIGINT NOT NULL, period TEXT NOT NULL, day TEXT NOT NULL, model TEXT NOT NULL, product TEXT NOT NULL, provider TEXT NOT NULL, cloud TEXT NOT NULL, region TEXT NOT NULL, agreements TEXT NOT NULL, prompt_tokens BIGINT NOT NULL, completion_tokens BIGINT NOT NULL, cached_tokens BIGINT NOT NULL, reasoning_tokens BIGINT NOT NULL, estimated INTEGER NOT NULL, stream INTEGER NOT NULL, status INTEGER NOT NULL, latency_ms BIGINT NOT NULL, revenue_micros BIGINT NOT NULL, cost_micros BIGINT NOT NULL)${withoutRowid};
CREATE TABLE accruals ( record_id TEXT NOT NULL REFERENCES usage (record_id), request_id TEXT NOT NULL, ts_ms BIGINT NOT NULL, period TEXT NOT NULL, day TEXT NOT NULL, agreement TEXT NOT NULL, payee TEXT NOT NULL, term INTEGER NOT NULL, rate_ppm BIGINT NOT NULL, currency TEXT NOT NULL, base_micros BIGINT NOT NULL, amount_micros BIGINT NOT NULL, accrued_micros BIGINT NOT NULL, over_cap_micros BIGINT NOT NULL, cap_micros BIGINT);
CREATE INDEX accruals_payee ON accruals (payee, day);
CREATE TABLE caps ( agreement TEXT NOT NULL, payee TEXT NOT NULL, term INTEGER NOT NULL, cap_micros BIGINT NOT NULL, accrued_micros BIGINT NOT NULL, PRIMARY KEY (agreement, payee, term));
ALTER TABLE usage ADD COLUMN tenant TEXT;
ALTER TABLE usage ADD COLUMN key_id TEXT;
CREATE INDEX usage_tenant ON usage (tenant, ts_ms);
CREATE INDEX usage_key ON usage (key_id, ts_ms);
CREATE TABLE keys ( id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, name TEXT NOT NULL, tenant TEXT NOT NULL, created_ms BIGINT NOT NULL, expires_ms BIGINT, revoked_ms BIGINT, rpm INTEGER NOT NULL, tpm INTEGER NOT NULL, budget_micros BIGINT, updated_ms BIGINT NOT NULL);
CREATE TABLE tenants ( name TEXT PRIMARY KEY, definition TEXT NOT NULL, updated_ms BIGINT NOT NULL, deleted_ms BIGINT);
CREATE TABLE admin_changes (id INTEGER PRIMARY KEY, seq BIGINT NOT NULL);
INSERT INTO admin_changes (id, seq) VALUES (1, 0);
DROP INDEX usage_tenant;
DROP INDEX usage_key;
CREATE INDEX usage_tenant ON usage (tenant, ts_ms) WHERE tenant IS NOT NULL;
CREATE INDEX usage_key ON usage (key_id, ts_ms) WHERE key_id IS NOT NULL;
INSERT INTO ledger_schema (version) VALUES (1), (2), (3);
`;

const ms = (iso) => Date.parse(iso);
const rid = (iso, n) => ms(iso).toString(16).padStart(12, '0') + '00000000c0ffee01' + n.toString(16).padStart(8, '0');

// Four requests as version 3 stored them: two in November on Azure under a capped Microsoft share
// (the second crosses the cap) and an uncapped AWS share on one of them; one on the last millisecond
// of November on OpenAI (no share); one on the first millisecond of December.
const U = [
  { id: rid('2026-11-03T10:00:00Z', 1), req: 'req-1', ts: ms('2026-11-03T10:00:00Z'), model: 'gpt-5', product: 'gpt-5', provider: 'az', cloud: 'azure', region: 'eastus', agr: 'ms@2026-01-01, aws@2026-06-01', p: 1000, c: 300, ca: 400, re: 100, est: 0, stream: 1, status: 200, lat: 120, rev: 5250, cost: 900, tenant: 'acme', key: 'k1' },
  { id: rid('2026-11-17T08:30:00Z', 2), req: 'req-2', ts: ms('2026-11-17T08:30:00Z'), model: 'gpt-5', product: 'gpt-5', provider: 'az', cloud: 'azure', region: 'eastus', agr: 'ms@2026-01-01, aws@2026-06-01', p: 2000, c: 700, ca: 0, re: 0, est: 0, stream: 0, status: 200, lat: 300, rev: 9500, cost: 0, tenant: null, key: null },
  { id: rid('2026-11-30T23:59:59.999Z', 3), req: 'req-3', ts: ms('2026-11-30T23:59:59.999Z'), model: 'gpt-5', product: 'gpt-5', provider: 'oa', cloud: 'openai', region: '', agr: '', p: 10, c: 5, ca: 0, re: 0, est: 1, stream: 1, status: 499, lat: 7, rev: 40, cost: 0, tenant: 'acme', key: null },
  { id: rid('2026-12-01T00:00:00Z', 4), req: 'req-4', ts: ms('2026-12-01T00:00:00Z'), model: 'gpt-5-mini', product: 'gpt-5', provider: 'az', cloud: 'azure', region: 'eastus', agr: 'ms@2026-01-01, aws@2026-06-01', p: 100, c: 10, ca: 0, re: 0, est: 0, stream: 0, status: 200, lat: 50, rev: 300, cost: 10, tenant: null, key: null },
];
// cap 2000 on Microsoft's term 0: 1050 accrued, then 1900 of which 950 fit, then 60 all over
const A = [
  { u: 0, agreement: 'ms@2026-01-01', payee: 'microsoft', term: 0, rate: 200000, base: 5250, amount: 1050, accrued: 1050, over: 0, cap: 2000 },
  { u: 0, agreement: 'aws@2026-06-01', payee: 'aws', term: 1, rate: 50000, base: 5250, amount: 263, accrued: 263, over: 0, cap: null },
  { u: 1, agreement: 'ms@2026-01-01', payee: 'microsoft', term: 0, rate: 200000, base: 9500, amount: 1900, accrued: 950, over: 950, cap: 2000 },
  { u: 3, agreement: 'ms@2026-01-01', payee: 'microsoft', term: 0, rate: 200000, base: 300, amount: 60, accrued: 0, over: 60, cap: 2000 },
];

const lit = (v) => (v === null ? 'NULL' : typeof v === 'number' ? String(v) : `'${v}'`);
function rowsSQL() {
  const day = (t) => new Date(t).toISOString().slice(0, 10);
  const u = U.map((r) => `INSERT INTO usage VALUES (${[r.id, r.req, r.ts, day(r.ts).slice(0, 7), day(r.ts), r.model, r.product, r.provider, r.cloud, r.region, r.agr, r.p, r.c, r.ca, r.re, r.est, r.stream, r.status, r.lat, r.rev, r.cost, r.tenant, r.key].map(lit).join(', ')});`);
  const a = A.map((x) => {
    const r = U[x.u];
    return `INSERT INTO accruals VALUES (${[r.id, r.req, r.ts, day(r.ts).slice(0, 7), day(r.ts), x.agreement, x.payee, x.term, x.rate, 'USD', x.base, x.amount, x.accrued, x.over, x.cap].map(lit).join(', ')});`;
  });
  return [...u, ...a, "INSERT INTO caps VALUES ('ms@2026-01-01', 'microsoft', 0, 2000, 2000);"].join('\n');
}

const CONFIG = (url) => `listen: 127.0.0.1:9
providers:
  - { name: oa, type: openai, cloud: openai, base_url: http://127.0.0.1:9/v1, api_key: sk-test }
models:
  - { name: gpt-5, deployments: [{ provider: oa, model: gpt-5 }] }
ledger: ${url}
`;

async function checks(cfg, read) {
  // the statement: November's two Microsoft accruals, the cap as stored
  const st = await ledgerJSON(cfg, ['statement', '--payee', 'microsoft', '--period', '2026-11']);
  assert.equal(st.lines.length, 1);
  const l = st.lines[0];
  assert.deepEqual(
    { agreement: l.agreement, rate: l.rate, revenue_base: l.revenue_base, share: l.share, accrued: l.accrued, over_cap: l.over_cap, cap: l.cap, cap_remaining: l.cap_remaining, requests: l.requests },
    { agreement: 'ms@2026-01-01', rate: '0.2', revenue_base: '0.014750', share: '0.002950', accrued: '0.002000', over_cap: '0.000950', cap: '0.002000', cap_remaining: '0.000000', requests: 2 },
  );
  const dec = await ledgerJSON(cfg, ['statement', '--payee', 'microsoft', '--period', '2026-12-01']);
  assert.deepEqual([dec.lines.length, dec.lines[0].requests, dec.lines[0].over_cap], [1, 1, '0.000060']);
  const all = await ledgerJSON(cfg, ['statement', '--payee', 'aws']);
  assert.deepEqual([all.lines[0].agreement, all.lines[0].rate, all.lines[0].accrued, all.lines[0].cap], ['aws@2026-06-01', '0.05', '0.000263', null]);

  // usage by day: the last millisecond of November stays in November
  const byDay = await ledgerJSON(cfg, ['usage', '--period', '2026-11', '--by', 'day']);
  assert.deepEqual(byDay.rows.map((r) => [r.key, r.requests, r.prompt_tokens, r.revenue]), [
    ['2026-11-03', 1, 1000, '0.005250'],
    ['2026-11-17', 1, 2000, '0.009500'],
    ['2026-11-30', 1, 10, '0.000040'],
  ]);
  const byModel = await ledgerJSON(cfg, ['usage', '--by', 'model']);
  assert.deepEqual(byModel.rows.map((r) => [r.key, r.requests, r.completion_tokens, r.cached_tokens, r.reasoning_tokens, r.estimated, r.cost]), [
    ['gpt-5', 3, 1005, 400, 100, 1, '0.000900'],
    ['gpt-5-mini', 1, 10, 0, 0, 0, '0.000010'],
  ]);
  const byTenant = await ledgerJSON(cfg, ['usage', '--period', '2026-11', '--by', 'tenant']);
  assert.deepEqual(byTenant.rows.map((r) => [r.key, r.requests]).sort(), [['', 1], ['acme', 2]]);
  const byCloud = await ledgerJSON(cfg, ['usage', '--period', '2026-12', '--by', 'cloud']);
  assert.deepEqual(byCloud.rows.map((r) => [r.key, r.requests]), [['azure', 1]]);

  // the views read as the version-3 tables did
  assert.deepEqual(await read('SELECT MAX(version) FROM ledger_schema'), [['4']]);
  assert.deepEqual(
    await read('SELECT record_id, request_id, period, day, model, provider, cloud, region, agreements, prompt_tokens, status, tenant FROM usage ORDER BY ts_ms'),
    U.map((r) => [r.id, r.req, new Date(r.ts).toISOString().slice(0, 7), new Date(r.ts).toISOString().slice(0, 10), r.model, r.provider, r.cloud, r.region, r.agr, String(r.p), String(r.status), r.tenant ?? '']),
  );
  assert.deepEqual(
    await read('SELECT request_id, day, agreement, payee, term, rate_ppm, base_micros, amount_micros, accrued_micros, over_cap_micros, cap_micros FROM accruals ORDER BY ts_ms, payee'),
    [
      ['req-1', '2026-11-03', 'aws@2026-06-01', 'aws', '1', '50000', '5250', '263', '263', '0', ''],
      ['req-1', '2026-11-03', 'ms@2026-01-01', 'microsoft', '0', '200000', '5250', '1050', '1050', '0', '2000'],
      ['req-2', '2026-11-17', 'ms@2026-01-01', 'microsoft', '0', '200000', '9500', '1900', '950', '950', '2000'],
      ['req-4', '2026-12-01', 'ms@2026-01-01', 'microsoft', '0', '200000', '300', '60', '0', '60', '2000'],
    ],
  );
  // each distinct dimension set and term is stored once
  assert.deepEqual(await read('SELECT (SELECT COUNT(*) FROM ledger_dims), (SELECT COUNT(*) FROM ledger_terms), (SELECT COUNT(*) FROM ledger_usage), (SELECT COUNT(*) FROM ledger_accruals)'), [['3', '2', '4', '4']]);
}

let dir;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cmx-migrate-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('SQLite: a version-3 ledger is migrated at open and reads the same', T, async () => {
  const db = join(dir, 'old.db');
  const sqlite = async (sql) => {
    const { stdout } = await run('sqlite3', ['-batch', '-noheader', '-separator', '\t', db, sql]);
    return stdout.split('\n').filter((l) => l !== '').map((l) => l.split('\t'));
  };
  await sqlite(V3(' WITHOUT ROWID') + rowsSQL());
  const cfg = join(dir, 'sqlite.yaml');
  await writeFile(cfg, CONFIG(`sqlite://${db}`));
  await checks(cfg, sqlite);
  await checks(cfg, sqlite); // opening a migrated ledger again changes nothing
});

test('PostgreSQL: a version-3 ledger is migrated at open and reads the same', T, async () => {
  const pg = await startPostgres();
  try {
    await pg.psql('CREATE DATABASE old');
    const url = pg.url.replace(/\/postgres$/, '/old');
    const psql = async (sql) => {
      const { stdout } = await run('psql', ['-X', '-At', '-F', '\t', '-v', 'ON_ERROR_STOP=1', '-d', url, '-c', sql], { timeout: 30_000 });
      return stdout.split('\n').filter((l) => l !== '').map((l) => l.split('\t'));
    };
    await psql(V3('') + rowsSQL());
    const cfg = join(dir, 'pg.yaml');
    await writeFile(cfg, CONFIG(url));
    await checks(cfg, psql);
    await checks(cfg, psql);
  } finally {
    await pg.close();
  }
});
