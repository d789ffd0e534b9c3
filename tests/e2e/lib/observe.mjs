// Helpers for the routing, circuit, reload and metrics tests: Prometheus text parsing, the admin
// deployments endpoint, promtool, and a bounded concurrent request loop.
//
//   const m = await scrape(gw.url);              // {text, samples}
//   value(m, 'cloudmux_requests_total', { model: 'm', provider: 'a', code: '200' })  // sum, 0 if none
//   const d = await deployment(gw.url, 'm', 'a'); // one row of GET /admin/v1/deployments
//   await promtoolCheck(text)                      // throws unless `promtool check metrics` passes
//   await pool(total, concurrency, async (i) => ...)  // runs fn(i) for i < total, `concurrency` at a time

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Parses one label set `a="x",b="y\"z"` (the text between the braces). */
function parseLabels(s) {
  const out = {};
  let i = 0;
  while (i < s.length) {
    while (s[i] === ',' || s[i] === ' ') i++;
    if (i >= s.length) break;
    const eq = s.indexOf('=', i);
    if (eq < 0) throw new Error(`bad label set ${JSON.stringify(s)}`);
    const name = s.slice(i, eq).trim();
    i = eq + 1;
    if (s[i] !== '"') throw new Error(`label ${name} is not quoted in ${JSON.stringify(s)}`);
    i++;
    let v = '';
    while (i < s.length && s[i] !== '"') {
      if (s[i] === '\\') {
        const c = s[i + 1];
        v += c === 'n' ? '\n' : c;
        i += 2;
      } else {
        v += s[i++];
      }
    }
    if (s[i] !== '"') throw new Error(`unterminated label value in ${JSON.stringify(s)}`);
    i++;
    out[name] = v;
  }
  return out;
}

/** Parses Prometheus text format: {samples: [{name, labels, value}], types: {family: type}, help}. */
export function parseProm(text) {
  const samples = [];
  const types = {};
  const help = {};
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    if (line.startsWith('#')) {
      const m = line.match(/^# (TYPE|HELP) (\S+) ?(.*)$/);
      if (m && m[1] === 'TYPE') types[m[2]] = m[3];
      else if (m) help[m[2]] = m[3];
      continue;
    }
    let name;
    let labels = {};
    let rest;
    const brace = line.indexOf('{');
    const space = line.indexOf(' ');
    if (brace >= 0 && (space < 0 || brace < space)) {
      name = line.slice(0, brace);
      // the closing brace: the last '}' (label values may contain '}' but the value cannot)
      const close = line.lastIndexOf('}');
      labels = parseLabels(line.slice(brace + 1, close));
      rest = line.slice(close + 1).trim();
    } else {
      name = line.slice(0, space);
      rest = line.slice(space + 1).trim();
    }
    const [v] = rest.split(/\s+/);
    const value = v === '+Inf' ? Infinity : v === '-Inf' ? -Infinity : Number(v);
    samples.push({ name, labels, value, line });
  }
  return { samples, types, help, text };
}

const matches = (labels, want) => Object.entries(want).every(([k, v]) => labels[k] === String(v));

/** The samples named `name` whose labels include `want`. */
export function series(m, name, want = {}) {
  return m.samples.filter((s) => s.name === name && matches(s.labels, want));
}

/** The sum of the samples named `name` whose labels include `want` (0 when there are none). */
export function value(m, name, want = {}) {
  return series(m, name, want).reduce((a, s) => a + s.value, 0);
}

/** GET /metrics: {status, contentType, text, samples, types}. Throws on a non-200 answer. */
export async function scrape(base) {
  const r = await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(5000) });
  const text = await r.text();
  if (r.status !== 200) throw new Error(`GET /metrics answered ${r.status}: ${text.slice(0, 500)}`);
  return { status: r.status, contentType: r.headers.get('content-type'), ...parseProm(text) };
}

/** GET /admin/v1/deployments (parsed JSON). */
export async function deployments(base) {
  const r = await fetch(`${base}/admin/v1/deployments`, { signal: AbortSignal.timeout(5000) });
  const text = await r.text();
  if (r.status !== 200) throw new Error(`GET /admin/v1/deployments answered ${r.status}: ${text.slice(0, 500)}`);
  return JSON.parse(text);
}

/** The row of GET /admin/v1/deployments for model/provider (throws when there is none). */
export async function deployment(base, model, provider) {
  const list = await deployments(base);
  const row = list.data.find((d) => d.model === model && d.provider === provider);
  if (!row) throw new Error(`no deployment ${model}/${provider} in ${JSON.stringify(list)}`);
  return row;
}

/** The promtool binary: $PROMTOOL, or `promtool` on PATH, or null. */
export function findPromtool() {
  if (process.env.PROMTOOL) return process.env.PROMTOOL;
  for (const dir of (process.env.PATH || '').split(delimiter)) {
    if (dir && existsSync(join(dir, 'promtool'))) return join(dir, 'promtool');
  }
  return existsSync('/usr/bin/promtool') ? '/usr/bin/promtool' : null;
}

/** Runs `promtool check metrics` on a text: {code, stdout, stderr}. Throws when promtool is missing. */
export function promtoolCheck(text, timeoutMs = 15_000) {
  const bin = findPromtool();
  if (!bin) {
    throw new Error('promtool not found: install the Debian package "prometheus" (it provides /usr/bin/promtool) or set $PROMTOOL; the metrics test cannot pass without it');
  }
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', (err) => {
      clearTimeout(t);
      reject(new Error(`cannot run ${bin}: ${err.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(text);
  });
}

/** Runs fn(i) for i in [0, total), at most `concurrency` at a time; resolves the results in order. */
export async function pool(total, concurrency, fn) {
  const results = new Array(total);
  let next = 0;
  const lane = async () => {
    for (;;) {
      const i = next++;
      if (i >= total) return;
      results[i] = await fn(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, total) }, lane));
  return results;
}

/** Counts values: ['a','b','a'] -> {a: 2, b: 1}. */
export function tally(values) {
  const out = {};
  for (const v of values) out[v] = (out[v] || 0) + 1;
  return out;
}
