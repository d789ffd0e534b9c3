// A minimal base for the translating-provider simulators (vertex-sim.mjs, anthropic-sim.mjs):
// a node:http server on 127.0.0.1 that records requests and violations, with scripted
// behaviours consumed FIFO (sim.enqueue({...}), `times: N` repeats) and helpers to stream
// paced events, reset the socket mid-stream or answer errors.

import http from 'node:http';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class SimBase {
  constructor(name) {
    this.name = name;
    /** every request received: {method, path, url, headers, body, text, violations} */
    this.requests = [];
    /** every way a request was wrong (strings) */
    this.violations = [];
    this.queue = [];
    this.sockets = new Set();
    this.server = http.createServer({ keepAliveTimeout: 30_000 }, (req, res) => this.receive(req, res));
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    this.server.on('clientError', (err, socket) => {
      if (String(err.code || '').startsWith('HPE_')) this.violations.push(`[${this.name}] malformed HTTP request: ${err.code}`);
      socket.destroy();
    });
  }

  listen() {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, '127.0.0.1', () => {
        this.port = this.server.address().port;
        this.origin = `http://127.0.0.1:${this.port}`;
        resolve(this);
      });
    });
  }

  enqueue(behaviour) {
    const b = { ...behaviour };
    const times = b.times ?? 1;
    delete b.times;
    this.queue.push({ b, left: times });
    return this;
  }

  next() {
    const q = this.queue[0];
    if (!q) return {};
    if (--q.left <= 0) this.queue.shift();
    return q.b;
  }

  reset() {
    this.requests.length = 0;
    this.violations.length = 0;
    this.queue.length = 0;
  }

  violate(rec, msg) {
    rec.violations.push(msg);
    this.violations.push(`[${this.name}] ${rec.method} ${rec.path}: ${msg}`);
  }

  async receive(req, res) {
    const at = Date.now();
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const text = Buffer.concat(chunks).toString('utf8');
    const u = new URL(req.url, this.origin);
    const rec = { at, method: req.method, path: u.pathname, url: u, headers: req.headers, text, body: undefined, violations: [] };
    this.requests.push(rec);
    try {
      await this.handle(rec, res);
    } catch (err) {
      this.violations.push(`[${this.name}] simulator error: ${err.stack || err}`);
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    }
  }

  json(res, status, obj, headers = {}) {
    const body = JSON.stringify(obj);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers });
    res.end(body);
  }

  /** Streams SSE frames (already formatted strings); b: paceMs, resetAfterEvents. */
  async stream(rec, res, frames, b, headers = {}) {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', ...headers });
    res.flushHeaders();
    rec.events = [];
    let n = 0;
    for (const f of frames) {
      if (n > 0 && b.paceMs) await sleep(b.paceMs);
      if (b.resetAfterEvents !== undefined && n === b.resetAfterEvents) {
        await sleep(30); // let what was written reach the peer first
        rec.reset = true;
        if (typeof res.socket?.resetAndDestroy === 'function') res.socket.resetAndDestroy();
        else res.socket?.destroy();
        return;
      }
      await new Promise((r) => res.write(f, r));
      rec.events.push(f);
      n++;
    }
    res.end();
  }

  async close() {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }
}

/** Words in a text, as the simulators count tokens. */
export function countWords(text) {
  const t = typeof text === 'string' ? text.trim() : '';
  return t ? t.split(/\s+/).length : 0;
}
