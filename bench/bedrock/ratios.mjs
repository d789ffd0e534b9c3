// Reads a bench/peers run directory and prints a target's req/s ratio to nginx-proxy.
//   node bench/bedrock/ratios.mjs RUN_DIR [TARGET=cloudmux-bedrock]
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const [dir, target = 'cloudmux-bedrock'] = process.argv.slice(2);
const table = (file) => {
  const rows = readFileSync(join(dir, file), 'utf8').trim().split('\n');
  const head = rows.shift().split('\t');
  return rows.map((r) => Object.fromEntries(r.split('\t').map((v, i) => [head[i], v])));
};
const load = table('load.tsv');
const at = (t, c) => load.find((r) => r.target === t && r.conns === String(c));
const fmt = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
for (const c of [32, 128, 1]) {
  const g = at(target, c), n = at('nginx-proxy', c), d = at('direct', c);
  if (!g || !n) continue;
  console.log(`conns ${c}: ${target} ${fmt(+g.rps, 0)} req/s, nginx-proxy ${fmt(+n.rps, 0)} req/s, ratio ${fmt(g.rps / n.rps)}x (goal >= 0.7x); ` +
    `CPU ${g.gw_cpu_pct}% vs nginx ${n.gw_cpu_pct}%` + (d ? `; added p50 over direct ${fmt(g.p50_ms - d.p50_ms, 3)} ms` : ''));
}
try {
  for (const r of table('stream.tsv'))
    if ([target, 'nginx-proxy', 'direct'].includes(r.target)) console.log(`${r.phase} ${r.target}: TTFB p50 ${r.ttfb_p50_ms} ms, total p50 ${r.total_p50_ms} ms`);
} catch {
  /* no stream phase */
}
