// Shared by the ledger's e2e tests: a config with revenue shares, exact money arithmetic in BigInt
// (computed here independently of the gateway), and helpers to read the ledger back.

import assert from 'node:assert/strict';
import { runCloudmux } from './gateway.mjs';

export const M = 1_000_000n;
export const NOW = '2026-11-15T12:00:00Z';
export const PERIOD = '2026-11';

/** n / d rounded half-even, for n >= 0 (BigInt). */
export function halfEven(n, d) {
  const q = n / d;
  const r = n % d;
  if (2n * r > d || (2n * r === d && q % 2n === 1n)) return q + 1n;
  return q;
}

/** "2.5" -> 2500000n micro-units. */
export function micros(text) {
  const [i, f = ''] = String(text).split('.');
  return BigInt(i) * M + BigInt((f + '000000').slice(0, 6));
}

/** 150n -> "0.000150" */
export function fmt(v) {
  const neg = v < 0n;
  const a = neg ? -v : v;
  return `${neg ? '-' : ''}${a / M}.${String(a % M).padStart(6, '0')}`;
}

/** Revenue of one upstream usage object at a price {input, output, cached?} (decimal strings). */
export function revenueOf(usage, price) {
  const prompt = BigInt(usage.prompt_tokens);
  const completion = BigInt(usage.completion_tokens);
  let cached = BigInt(usage.prompt_tokens_details?.cached_tokens ?? 0);
  if (cached > prompt) cached = prompt;
  const inp = micros(price.input);
  const cin = price.cached !== undefined ? micros(price.cached) : inp;
  return halfEven((prompt - cached) * inp + cached * cin + completion * micros(price.output), M);
}

export const shareOf = (revenue, rate) => halfEven(revenue * micros(rate), M);

/** The pricing of the test deployments (decimal strings, as in the config). */
export const PRICES = {
  az: { input: '2.5', output: '10', cached: '1.25' },
  oa: { input: '3', output: '12' },
  local: { input: '0.5', output: '0.5' },
};
export const COST_AZ = { input: '1', output: '4' };

const priceYAML = (p) => {
  const o = { input_per_mtok: Number(p.input), output_per_mtok: Number(p.output) };
  if (p.cached !== undefined) o.cached_input_per_mtok = Number(p.cached);
  return o;
};

/** The models of the stack (sims az: azure, oa: openai, local: compatible). */
export function ledgerModels({ withLocal = true } = {}) {
  const models = [
    { name: 'gpt-5', deployments: [{ provider: 'az', model: 'gpt5-prod', price: priceYAML(PRICES.az), cost: priceYAML(COST_AZ) }] },
    { name: 'gpt-5-direct', product: 'gpt-5', deployments: [{ provider: 'oa', model: 'gpt-5', price: priceYAML(PRICES.oa) }] },
  ];
  if (withLocal) models.push({ name: 'llama', deployments: [{ provider: 'local', model: 'llama-3.1-8b', price: priceYAML(PRICES.local) }] });
  return models;
}

/**
 * Agreements: microsoft takes `rate` of azure + openai revenue (capped at `cap`, a decimal string),
 * azure-resell takes 0.075 of azure revenue (no cap). ledger: the ledger value.
 */
export function ledgerPatch({ cap, rate = '0.2', ledger }) {
  return (config) => {
    config.maker = 'openai';
    config.products = [{ name: 'gpt-5', launches: { azure: '2026-08-07', openai: '2026-08-07' } }];
    config.agreements = [
      {
        id: 'ms',
        versions: [
          {
            effective: '2026-01-01',
            licences: [{ licensee: 'azure', products: '*', until: '2030-12-31' }],
            revenue_shares: [
              { payee: 'microsoft', rate: Number(rate), base: { clouds: ['azure', 'openai'] }, until: '2030-12-31', cap },
              { payee: 'azure-resell', rate: 0.075, base: { clouds: ['azure'] }, until: '2030-12-31' },
            ],
          },
        ],
      },
    ];
    if (ledger !== undefined) config.ledger = ledger;
  };
}

/** Runs `cloudmux ledger ARGS --format json` and parses its output. */
export async function ledgerJSON(configFile, args, env = {}) {
  const r = await runCloudmux(['ledger', ...args, '--config', configFile, '--format', 'json'], { env, timeoutMs: 30_000 });
  assert.equal(r.code, 0, `cloudmux ledger ${args.join(' ')} failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** Runs fn(i) for i in [0, total) with `concurrency` at a time; returns the results. */
export async function pool(total, concurrency, fn) {
  const out = new Array(total);
  let next = 0;
  const worker = async () => {
    while (next < total) {
      const i = next++;
      out[i] = await fn(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, total) }, worker));
  return out;
}

/** One chat request through the SDK (streamed or not); returns the x-request-id it was given. */
export async function chat(client, model, { stream = false, includeUsage = false, id, text = 'hello ledger' } = {}) {
  const body = { model, messages: [{ role: 'user', content: text }] };
  const headers = id ? { 'x-request-id': id } : {};
  if (stream) {
    body.stream = true;
    if (includeUsage) body.stream_options = { include_usage: true };
    const s = await client.chat.completions.create(body, { headers });
    let usage = null;
    for await (const ch of s) if (ch.usage) usage = ch.usage;
    return { usage };
  }
  const r = await client.chat.completions.create(body, { headers });
  return { usage: r.usage };
}
