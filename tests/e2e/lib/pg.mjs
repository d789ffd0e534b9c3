// A throwaway PostgreSQL server for the ledger's tests: Debian's `postgresql` package, initdb into a
// temp dir, pg_ctl on a free 127.0.0.1 port, trust auth. When the tests run as root the server runs
// as the `postgres` user (runuser), since PostgreSQL refuses to run as root.
//
//   const pg = await startPostgres();  pg.url, await pg.psql('SELECT 1'), await pg.stop(), await pg.start(),
//   await pg.close()

import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { chown, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './gateway.mjs';

const run = promisify(execFile);

/** Directory holding initdb/pg_ctl, or null when PostgreSQL is not installed. */
export function pgBinDir() {
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    const versions = readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'pg_ctl'))).sort((a, b) => Number(b) - Number(a));
    if (versions.length) return join(root, versions[0], 'bin');
  }
  return null;
}

async function asOwner(bin, args, user) {
  if (user) return run('runuser', ['-u', user, '--', bin, ...args], { timeout: 60_000 });
  return run(bin, args, { timeout: 60_000 });
}

export async function startPostgres() {
  const bin = pgBinDir();
  if (!bin) throw new Error('PostgreSQL is not installed (scripts/install-deps.sh test installs Debian\'s postgresql)');
  const root = process.getuid && process.getuid() === 0;
  const user = root ? 'postgres' : null;
  const dir = await mkdtemp(join(tmpdir(), 'cmx-pg-'));
  if (root) {
    const { stdout: uid } = await run('id', ['-u', 'postgres']);
    const { stdout: gid } = await run('id', ['-g', 'postgres']);
    await chown(dir, Number(uid), Number(gid));
  }
  const data = join(dir, 'data');
  await asOwner(join(bin, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8'], user);
  const port = await freePort();
  const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=50`;
  const pg = {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    dir,
    running: false,
    async start() {
      await asOwner(join(bin, 'pg_ctl'), ['-D', data, '-o', opts, '-l', join(dir, 'log'), '-w', '-t', '60', 'start'], user);
      pg.running = true;
    },
    async stop() {
      await asOwner(join(bin, 'pg_ctl'), ['-D', data, '-m', 'fast', '-w', '-t', '60', 'stop'], user);
      pg.running = false;
    },
    /** Runs SQL with psql; returns the rows as arrays of strings. */
    async psql(sql) {
      const { stdout } = await run('psql', ['-X', '-At', '-F', '\t', '-d', pg.url, '-c', sql], { timeout: 30_000 });
      return stdout.split('\n').filter((l) => l !== '').map((l) => l.split('\t'));
    },
    async close() {
      if (pg.running) await pg.stop().catch(() => {});
      await rm(dir, { recursive: true, force: true });
    },
  };
  await pg.start();
  return pg;
}
