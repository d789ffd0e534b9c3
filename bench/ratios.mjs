// Reads a bench/peers run directory and prints cloudmux's ratios to nginx-proxy and direct.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.argv[2];
const rows = readFileSync(join(dir, 'load.tsv'), 'utf8').trim().split('\n');
const head = rows.shift().split('\t');
const load = rows.map((r) => Object.fromEntries(r.split('\t').map((v, i) => [head[i], v])));
const at = (t, c) => load.find((r) => r.target === t && r.conns === String(c));
const fmt = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
const out = [];
// cloudmux itself and its translated paths (cloudmux-anthropic, cloudmux-vertex: bench/run.sh
// --translated), each against nginx proxying the OpenAI stub
const gws = [...new Set(load.map((r) => r.target).filter((t) => t.startsWith('cloudmux')))];
for (const t of gws) {
  for (const c of [32, 128, 1]) {
    const g = at(t, c), n = at('nginx-proxy', c), d = at('direct', c);
    if (!g || !n) continue;
    out.push(`conns ${c}: ${t} ${fmt(+g.rps, 0)} req/s, nginx-proxy ${fmt(+n.rps, 0)} req/s, ` +
      `ratio ${fmt(g.rps / n.rps)}x; ${t} CPU ${g.gw_cpu_pct}% vs nginx ${n.gw_cpu_pct}%` +
      (d ? `; added p50 over direct ${fmt(g.p50_ms - d.p50_ms, 3)} ms (nginx ${fmt(n.p50_ms - d.p50_ms, 3)} ms)` : ''));
  }
  const rss = Math.max(...load.filter((r) => r.target === t).map((r) => +r.rss_mb));
  out.push(`${t} peak RSS ${fmt(rss, 1)} MiB`);
}
// Extra cloudmux targets (cloudmux-routed, ...) against plain cloudmux in the same run: the
// cost of what they switch on.
for (const t of gws.filter((t) => t.startsWith('cloudmux-'))) {
  for (const c of [32, 128, 1]) {
    const x = at(t, c), g = at('cloudmux', c);
    if (!x || !g) continue;
    out.push(`conns ${c}: ${t} = ${fmt(x.rps / g.rps, 3)}x cloudmux`);
  }
}
try {
  const srows = readFileSync(join(dir, 'stream.tsv'), 'utf8').trim().split('\n');
  const sh = srows.shift().split('\t');
  for (const r of srows.map((x) => Object.fromEntries(x.split('\t').map((v, i) => [sh[i], v])))) {
    if (r.target.startsWith('cloudmux') || r.target === 'nginx-proxy' || r.target === 'direct')
      out.push(`${r.phase} ${r.target}: TTFB p50 ${r.ttfb_p50_ms} ms, total p50 ${r.total_p50_ms} ms`);
  }
} catch { /* no stream phase */ }
console.log(out.join('\n'));
