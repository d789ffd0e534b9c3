// A throwaway Redis server for the fleet tests: Debian's `redis-server`, on a free 127.0.0.1 port,
// no persistence, in a temp dir.
//
//   const r = await startRedis();  r.url, await r.stop(), await r.start(), await r.close()

import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './gateway.mjs';

function ping(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => {
      got += d;
      if (got.includes('\r\n')) {
        s.destroy();
        resolve(got.startsWith('+PONG'));
      }
    });
    s.on('error', () => resolve(false));
    s.setTimeout(500, () => {
      s.destroy();
      resolve(false);
    });
  });
}

export async function startRedis() {
  const dir = await mkdtemp(join(tmpdir(), 'cmx-redis-'));
  const port = await freePort();
  const r = {
    port,
    url: `redis://127.0.0.1:${port}`,
    child: null,
    async start() {
      r.child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
      const deadline = Date.now() + 10_000;
      while (!(await ping(port))) {
        if (Date.now() > deadline) throw new Error('redis-server did not start (scripts/install-deps.sh test installs it)');
        await new Promise((res) => setTimeout(res, 50));
      }
    },
    async stop() {
      if (!r.child) return;
      const c = r.child;
      r.child = null;
      await new Promise((res) => {
        c.once('exit', res);
        c.kill('SIGTERM');
      });
    },
    async close() {
      await r.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
  await r.start();
  return r;
}
