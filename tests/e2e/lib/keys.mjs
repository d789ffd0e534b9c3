// Helpers for the virtual-key tests: the stack (one OpenAI simulator, priced), the admin API,
// `cloudmux keys`, and polling until a key works or stops working.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import OpenAI from 'openai';
import { runCloudmux } from './gateway.mjs';

export const ADMIN = 'adm-e2e-keys-0123456789';
export const PRICE = { input_per_mtok: 3, output_per_mtok: 12 };
export const SIMS = { oa: { flavor: 'openai', models: ['gpt-5', 'gpt-4o'] } };
export const MODELS = [
  { name: 'gpt-5', deployments: [{ provider: 'oa', model: 'gpt-5', price: PRICE }] },
  { name: 'gpt-4o', deployments: [{ provider: 'oa', model: 'gpt-4o', price: PRICE }] },
];

export const sha256 = (s) => createHash('sha256').update(s).digest('hex');

/** An SDK client presenting key. */
export const keyed = (gw, key) => new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key, maxRetries: 0, timeout: 15_000 });

/** Calls the admin API; returns { status, body }. */
export async function admin(gw, method, path, body, key = ADMIN) {
  const r = await fetch(`${gw.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await r.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: r.status, body: json, text };
}

/** `cloudmux keys ARGS --config FILE`. */
export function keysCli(configFile, args, env = {}) {
  return runCloudmux(['keys', ...args, '--config', configFile], { env, timeoutMs: 30_000 });
}

/** Creates a key with the CLI; returns { key, id }. */
export async function createKey(configFile, args, env = {}) {
  const r = await keysCli(configFile, ['create', ...args], env);
  assert.equal(r.code, 0, `keys create failed: ${r.stderr}`);
  const lines = r.stdout.trim().split('\n');
  assert.match(lines[0], /^cmx-[0-9A-Za-z]{43}$/);
  const id = /^id: (key_[0-9a-f]{16})$/.exec(lines[1])?.[1];
  assert.ok(id, `no id in ${r.stdout}`);
  return { key: lines[0], id };
}

/** One chat request with key: the HTTP status (200, or the error's). */
export async function statusWith(gw, key, model = 'gpt-5') {
  try {
    await keyed(gw, key).chat.completions.create({ model, messages: [{ role: 'user', content: 'hi keys' }] });
    return 200;
  } catch (err) {
    if (err.status === undefined) throw err;
    return err.status;
  }
}

/** Polls until a request with key answers `status` (every 25 ms); returns the ms it took. */
export async function until(gw, key, status, timeoutMs, model = 'gpt-5') {
  const t0 = Date.now();
  let last;
  while (Date.now() - t0 <= timeoutMs) {
    last = await statusWith(gw, key, model);
    if (last === status) return Date.now() - t0;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`a request with the key still answers ${last}, not ${status}, after ${timeoutMs} ms`);
}
