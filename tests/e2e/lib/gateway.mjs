// Starts and stops the cloudmux binary for the e2e tests.
//
//   const gw = await startGateway({ config, env, workers: 2, args: [] });
//   gw.url, gw.port, gw.stdoutLines, gw.stderr, gw.accessLog(), await gw.stop('SIGTERM') -> exit code
//
// The binary is $CLOUDMUX_BIN or build/cloudmux (relative to the repository root). Every child process
// is killed when the test process exits, so none outlives a test file.

import { spawn } from 'node:child_process';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const BIN = process.env.CLOUDMUX_BIN ? resolve(process.env.CLOUDMUX_BIN) : join(REPO_ROOT, 'build/cloudmux');

const children = new Set();
process.on('exit', () => {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
});

/** A TCP port that was free a moment ago (listen on 0, close). */
export function freePort() {
  return new Promise((resolvePort, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolvePort(port));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// A tiny YAML emitter: block mappings and sequences; strings plain when unambiguous, otherwise
// double-quoted with JSON escapes (valid YAML double-quoted scalars).

const RESERVED = /^(true|false|yes|no|on|off|y|n|null|~)$/i;
function scalar(v) {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new Error(`cannot emit ${v} as YAML`);
    return String(v);
  }
  if (typeof v === 'bigint') return v.toString();
  const s = String(v);
  if (/^[A-Za-z_][A-Za-z0-9_.\/-]*$/.test(s) && !RESERVED.test(s)) return s;
  if (/^\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}"'\s#]*)?\}$/.test(s)) return s; // ${ENV} as in the docs
  return JSON.stringify(s);
}
const isBlock = (v) => v !== null && typeof v === 'object' && (Array.isArray(v) ? v.length > 0 : Object.keys(v).length > 0);
function emptyCollection(v) {
  return Array.isArray(v) ? '[]' : '{}';
}

/** Serialises a plain JS value (objects, arrays, scalars) as block-style YAML. */
export function toYAML(value, indent = 0) {
  const pad = ' '.repeat(indent);
  if (Array.isArray(value)) {
    if (!value.length) return `${pad}[]\n`;
    let out = '';
    for (const item of value) {
      if (isBlock(item)) {
        const inner = toYAML(item, indent + 2);
        out += `${pad}- ${inner.slice(indent + 2)}`;
      } else {
        out += `${pad}- ${item !== null && typeof item === 'object' ? emptyCollection(item) : scalar(item)}\n`;
      }
    }
    return out;
  }
  if (value !== null && typeof value === 'object') {
    let out = '';
    for (const [k, v] of Object.entries(value)) {
      if (v === undefined) continue;
      const key = scalar(k);
      if (isBlock(v)) out += `${pad}${key}:\n${toYAML(v, indent + 2)}`;
      else out += `${pad}${key}: ${v !== null && typeof v === 'object' ? emptyCollection(v) : scalar(v)}\n`;
    }
    return out || `${pad}{}\n`;
  }
  return `${pad}${scalar(value)}\n`;
}

// ---------------------------------------------------------------------------------------------

/** The environment for a cloudmux child: ours, minus proxies (everything is on 127.0.0.1). */
function childEnv(extra = {}, { inherit = true } = {}) {
  const env = inherit ? { ...process.env } : { PATH: process.env.PATH };
  for (const k of ['http_proxy', 'HTTP_PROXY', 'https_proxy', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY']) delete env[k];
  env.NO_PROXY = env.no_proxy = '127.0.0.1,localhost';
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined || v === null) delete env[k];
    else env[k] = String(v);
  }
  return env;
}

/** Writes a config (object -> YAML, or text as is) into a fresh temp dir; returns {dir, file}. */
export async function writeConfig(config, name = 'cloudmux.yaml') {
  const dir = await mkdtemp(join(tmpdir(), 'cmx-e2e-'));
  const file = join(dir, name);
  await writeFile(file, typeof config === 'string' ? config : toYAML(config));
  return { dir, file };
}

/**
 * Runs `cloudmux ARGS...` to completion: {code, signal, stdout, stderr, timedOut}.
 */
export function runCloudmux(args, { env = {}, timeoutMs = 10_000, inheritEnv = true } = {}) {
  return new Promise((resolveRun, reject) => {
    const child = spawn(BIN, args, { env: childEnv(env, { inherit: inheritEnv }), stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      children.delete(child);
      reject(new Error(`cannot run ${BIN}: ${err.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      resolveRun({ code, signal, stdout, stderr, timedOut });
    });
  });
}

/**
 * Starts `cloudmux serve` on a free port and waits until GET /readyz answers 200.
 * opts: { config (object or YAML text), env, workers (2), args ([]), readyTimeoutMs (10000),
 *         waitReady (true), readyHeaders ({}: headers for the /readyz probe) }
 */
export async function startGateway(opts = {}) {
  const { config, env = {}, workers = 2, args = [], readyTimeoutMs = 10_000, waitReady = true, readyHeaders = {} } = opts;
  const { dir, file } = await writeConfig(config);
  const port = await freePort();
  const argv = ['serve', '--config', file, '--listen', `127.0.0.1:${port}`, '--workers', String(workers), ...args];
  const child = spawn(BIN, argv, { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);

  const gw = {
    url: `http://127.0.0.1:${port}`,
    port,
    process: child,
    configFile: file,
    argv,
    stdoutLines: [],
    stdoutText: '',
    stderr: '',
    exitCode: undefined,
    exitSignal: undefined,
    exited: null,
  };
  let partial = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d) => {
    gw.stdoutText += d;
    partial += d;
    let i;
    while ((i = partial.indexOf('\n')) >= 0) {
      gw.stdoutLines.push(partial.slice(0, i));
      partial = partial.slice(i + 1);
    }
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => (gw.stderr += d));
  gw.exited = new Promise((resolveExit) => {
    child.on('error', (err) => {
      gw.spawnError = err;
      gw.exitCode = null;
      children.delete(child);
      resolveExit(null);
    });
    child.on('exit', (code, signal) => {
      gw.exitCode = code;
      gw.exitSignal = signal;
      children.delete(child);
    });
    child.on('close', () => {
      if (partial) {
        gw.stdoutLines.push(partial);
        partial = '';
      }
      resolveExit(gw.exitCode);
    });
  });

  /** The stdout lines that parse as JSON objects (the access log). */
  gw.accessLog = () => {
    const out = [];
    for (const line of gw.stdoutLines) {
      try {
        const j = JSON.parse(line);
        if (j && typeof j === 'object') out.push(j);
      } catch {
        /* not a log line */
      }
    }
    return out;
  };
  /** Waits for an access-log entry matching pred. */
  gw.waitForLog = async (pred, timeoutMs = 3000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = gw.accessLog().find(pred);
      if (hit) return hit;
      if (Date.now() > deadline) {
        throw new Error(`no matching access-log line within ${timeoutMs} ms; stdout was:\n${gw.stdoutLines.slice(-20).join('\n')}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  /** Waits for the process to exit; resolves the exit code (null when killed by a signal). */
  gw.waitExit = (timeoutMs = 10_000) =>
    new Promise((resolveW, reject) => {
      const t = setTimeout(() => reject(new Error(`cloudmux did not exit within ${timeoutMs} ms`)), timeoutMs);
      gw.exited.then((c) => {
        clearTimeout(t);
        resolveW(c);
      });
    });
  /** Sends a signal and waits (bounded) for exit; returns the exit code. SIGKILLs on timeout. */
  gw.stop = async (signal = 'SIGTERM', timeoutMs = 10_000) => {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        child.kill(signal);
      } catch {
        /* gone */
      }
    }
    try {
      return await gw.waitExit(timeoutMs);
    } catch (err) {
      child.kill('SIGKILL');
      await gw.exited;
      throw err;
    }
  };
  /** Best-effort teardown for after() hooks: SIGTERM, then SIGKILL after 3 s; removes the temp dir. */
  gw.kill = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 3000);
      await gw.exited;
      clearTimeout(t);
    }
    await rm(dir, { recursive: true, force: true });
  };
  gw.running = () => child.exitCode === null && child.signalCode === null;
  /** Sanitizer reports (ASan, LSan, UBSan) the gateway printed on stderr, or null. */
  gw.sanitizerReport = () => sanitizerReport(gw.stderr);

  if (waitReady) {
    try {
      await waitReadyz(gw, readyTimeoutMs, readyHeaders);
    } catch (err) {
      await gw.kill();
      throw err;
    }
  }
  return gw;
}

const SANITIZER_RE = /^.*(ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|WARNING: ThreadSanitizer|free\(\): |double free|malloc\(\): ).*$/m;

/** The first sanitizer or allocator complaint in a stderr text (and what follows it), or null. */
export function sanitizerReport(stderr) {
  const m = SANITIZER_RE.exec(stderr || '');
  return m ? stderr.slice(m.index, m.index + 4000) : null;
}

async function waitReadyz(gw, timeoutMs, headers = {}) {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  for (;;) {
    if (gw.spawnError) throw new Error(`cannot start ${BIN}: ${gw.spawnError.message}`);
    if (!gw.running()) {
      await gw.exited;
      throw new Error(`cloudmux exited (code ${gw.exitCode}, signal ${gw.exitSignal}) before /readyz was 200\nargs: ${gw.argv.join(' ')}\nstderr:\n${gw.stderr}\nstdout:\n${gw.stdoutText}`);
    }
    try {
      const r = await fetch(`${gw.url}/readyz`, { headers, signal: AbortSignal.timeout(1000) });
      await r.arrayBuffer();
      if (r.status === 200) return;
      last = `status ${r.status}`;
    } catch (err) {
      last = err.cause?.code || err.message;
    }
    if (Date.now() > deadline) {
      throw new Error(`cloudmux not ready within ${timeoutMs} ms (${last})\nstderr:\n${gw.stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
