// A raw HTTP/1.1 client connection for tests that fetch() cannot express: keep-alive on one socket,
// pipelining, chunked request bodies, Expect: 100-continue, malformed requests.

import net from 'node:net';

export class RawConn {
  /** Opens a TCP connection; rejects after timeoutMs. */
  static open(port, host = '127.0.0.1', timeoutMs = 2000) {
    return new Promise((resolve, reject) => {
      const sock = net.connect(port, host);
      const t = setTimeout(() => {
        sock.destroy();
        reject(new Error(`connect to ${host}:${port} timed out`));
      }, timeoutMs);
      sock.once('connect', () => {
        clearTimeout(t);
        sock.setNoDelay(true);
        resolve(new RawConn(sock));
      });
      sock.once('error', (err) => {
        clearTimeout(t);
        reject(err);
      });
    });
  }

  constructor(sock) {
    this.sock = sock;
    this.buf = Buffer.alloc(0);
    this.ended = false;
    this.closed = false;
    this.error = null;
    this.waiters = [];
    sock.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    sock.on('end', () => {
      this.ended = true;
      this.wake();
    });
    sock.on('close', () => {
      this.closed = true;
      this.ended = true;
      this.wake();
    });
    sock.on('error', (err) => {
      this.error = err;
      this.wake();
    });
  }

  wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  // resolves on new data / end / error, or rejects at the deadline
  more(deadline, what) {
    return new Promise((resolve, reject) => {
      const ms = deadline - Date.now();
      if (ms <= 0) return reject(new Error(`timed out waiting for ${what}; have ${JSON.stringify(this.buf.toString('latin1').slice(0, 300))}`));
      const t = setTimeout(() => reject(new Error(`timed out waiting for ${what}; have ${JSON.stringify(this.buf.toString('latin1').slice(0, 300))}`)), ms);
      this.waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  write(data) {
    return new Promise((resolve, reject) => this.sock.write(data, (err) => (err ? reject(err) : resolve())));
  }

  /** Waits until the buffered input contains `str` (latin1); consumes nothing. */
  async waitFor(str, timeoutMs = 3000) {
    const deadline = Date.now() + timeoutMs;
    while (!this.buf.toString('latin1').includes(str)) {
      if (this.ended || this.error) throw new Error(`connection ended before ${JSON.stringify(str)} arrived; have ${JSON.stringify(this.buf.toString('latin1'))}`);
      await this.more(deadline, JSON.stringify(str));
    }
  }

  /**
   * Reads one response (a 1xx interim response counts as one): {status, statusLine, headers, body,
   * text, rawHead}. `headers` has lower-case names; repeated headers are joined with ", ".
   */
  async readResponse({ timeoutMs = 5000, method = 'GET' } = {}) {
    const deadline = Date.now() + timeoutMs;
    let headEnd;
    while ((headEnd = this.buf.indexOf('\r\n\r\n')) < 0) {
      if (this.ended || this.error) throw new Error(`connection closed before a response head; have ${JSON.stringify(this.buf.toString('latin1'))}`);
      await this.more(deadline, 'response head');
    }
    const rawHead = this.buf.subarray(0, headEnd).toString('latin1');
    this.buf = this.buf.subarray(headEnd + 4);
    const [statusLine, ...lines] = rawHead.split('\r\n');
    const m = statusLine.match(/^HTTP\/(\d\.\d) (\d{3})(?: (.*))?$/);
    if (!m) throw new Error(`bad status line ${JSON.stringify(statusLine)}`);
    const status = Number(m[2]);
    const headers = {};
    const headerList = [];
    for (const l of lines) {
      const i = l.indexOf(':');
      const k = l.slice(0, i).trim().toLowerCase();
      const v = l.slice(i + 1).trim();
      headerList.push([k, v]);
      headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}`;
    }
    const res = { status, statusLine, httpVersion: m[1], headers, headerList, rawHead, body: Buffer.alloc(0), text: '' };
    if (status < 200 || status === 204 || status === 304 || method === 'HEAD') return res;

    const te = (headers['transfer-encoding'] || '').toLowerCase();
    if (te.includes('chunked')) {
      const parts = [];
      for (;;) {
        let lineEnd;
        while ((lineEnd = this.buf.indexOf('\r\n')) < 0) {
          if (this.ended || this.error) throw new Error('connection closed inside a chunked body');
          await this.more(deadline, 'chunk size');
        }
        const size = parseInt(this.buf.subarray(0, lineEnd).toString('latin1').split(';')[0], 16);
        if (Number.isNaN(size)) throw new Error(`bad chunk size line ${JSON.stringify(this.buf.subarray(0, lineEnd).toString('latin1'))}`);
        if (size === 0) {
          // trailers until an empty line
          this.buf = this.buf.subarray(lineEnd + 2);
          let end;
          while ((end = this.buf.indexOf('\r\n')) < 0) {
            if (this.ended || this.error) throw new Error('connection closed inside chunked trailers');
            await this.more(deadline, 'chunked trailer');
          }
          while (end > 0) {
            this.buf = this.buf.subarray(end + 2);
            while ((end = this.buf.indexOf('\r\n')) < 0) {
              if (this.ended || this.error) throw new Error('connection closed inside chunked trailers');
              await this.more(deadline, 'chunked trailer');
            }
          }
          this.buf = this.buf.subarray(2);
          break;
        }
        while (this.buf.length < lineEnd + 2 + size + 2) {
          if (this.ended || this.error) throw new Error('connection closed inside a chunk');
          await this.more(deadline, 'chunk data');
        }
        parts.push(this.buf.subarray(lineEnd + 2, lineEnd + 2 + size));
        this.buf = this.buf.subarray(lineEnd + 2 + size + 2);
      }
      res.body = Buffer.concat(parts);
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      while (this.buf.length < n) {
        if (this.ended || this.error) throw new Error(`connection closed after ${this.buf.length} of ${n} body bytes`);
        await this.more(deadline, 'body');
      }
      res.body = this.buf.subarray(0, n);
      this.buf = this.buf.subarray(n);
    } else {
      while (!this.ended && !this.error) await this.more(deadline, 'end of a close-delimited body');
      res.body = this.buf;
      this.buf = Buffer.alloc(0);
    }
    res.text = res.body.toString('utf8');
    return res;
  }

  /** Resolves true once the peer closed (FIN or reset), false after timeoutMs. */
  async waitClosed(timeoutMs = 2000) {
    const deadline = Date.now() + timeoutMs;
    while (!this.ended && !this.error) {
      try {
        await this.more(deadline, 'close');
      } catch {
        return false;
      }
    }
    return true;
  }

  close() {
    this.sock.destroy();
  }
}

/** Builds a request as a Buffer. body: string|Buffer; adds Content-Length unless given a TE header. */
export function request(method, path, { headers = {}, body } = {}) {
  const h = { host: '127.0.0.1', ...headers };
  const names = Object.keys(h).map((k) => k.toLowerCase());
  if (body !== undefined && !names.includes('content-length') && !names.includes('transfer-encoding')) {
    h['content-length'] = Buffer.byteLength(body);
  }
  let head = `${method} ${path} HTTP/1.1\r\n`;
  for (const [k, v] of Object.entries(h)) head += `${k}: ${v}\r\n`;
  head += '\r\n';
  const h0 = Buffer.from(head, 'latin1');
  return body === undefined ? h0 : Buffer.concat([h0, Buffer.isBuffer(body) ? body : Buffer.from(body)]);
}

/** Encodes a body as HTTP/1.1 chunks. */
export function chunked(parts) {
  let out = '';
  for (const p of parts) out += `${Buffer.byteLength(p).toString(16)}\r\n${p}\r\n`;
  return `${out}0\r\n\r\n`;
}
