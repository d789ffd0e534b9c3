// Provider simulators for cloudmux's end-to-end tests: OpenAI, Azure OpenAI (classic deployment URLs
// and the /openai/v1 surface) and generic OpenAI-compatible servers (vLLM, llama.cpp, Ollama).
//
// Each simulator is a plain node:http server on 127.0.0.1 that
//   - checks every request it receives (path, method, auth header, api-version, Content-Type, body)
//     and records each problem in sim.violations (the request is then answered with an error too, so
//     the problem also shows up on the client side);
//   - answers deterministically (chat echoes the last user text; tools are called; embeddings are
//     derived from the input), in the field order and with the extras of the real service (recorded
//     streams in shared/specs/testvectors/provider-stream-fixtures);
//   - can be scripted per request with sim.enqueue({...}) (errors, delays, paced/reset/hung streams,
//     compatible-server quirks).
//
// No dependencies beyond Node's standard library.

import http from 'node:http';
import { EventEmitter } from 'node:events';
import { createHash } from 'node:crypto';

/** The API key the e2e tests send to cloudmux; no simulator may ever receive it. */
export const CLIENT_KEY = 'sk-client-should-not-be-forwarded';

const FLAVORS = new Set(['openai', 'azure', 'compatible']);

// Azure's content-filter annotations, as recorded (azure-model-router.1.chunks.txt).
const AZURE_PROMPT_FILTER = () => ({
  hate: { filtered: false, severity: 'safe' },
  jailbreak: { filtered: false, detected: false },
  self_harm: { filtered: false, severity: 'safe' },
  sexual: { filtered: false, severity: 'safe' },
  violence: { filtered: false, severity: 'safe' },
});
const AZURE_CHOICE_FILTER = () => ({
  hate: { filtered: false, severity: 'safe' },
  self_harm: { filtered: false, severity: 'safe' },
  sexual: { filtered: false, severity: 'safe' },
  violence: { filtered: false, severity: 'safe' },
});

// ---------------------------------------------------------------------------------------------
// Small deterministic helpers (exported so tests can compute expected values)

/** Words in a text, as the simulators count tokens. */
export function countWords(text) {
  if (typeof text !== 'string') return 0;
  const t = text.trim();
  return t ? t.split(/\s+/).length : 0;
}

/** The text of a message's content: a string, or the text parts of a content-part array. */
export function contentText(content) {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .filter((p) => p && (p.type === 'text' || p.type === 'refusal') && typeof (p.text ?? p.refusal) === 'string')
      .map((p) => p.text ?? p.refusal)
      .join(' ');
  }
  return '';
}

function fnv1a(str) {
  let h = 0x811c9dc5;
  for (let i = 0; i < str.length; i++) {
    h ^= str.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/**
 * The embedding every simulator returns for one input item (a string or an array of token ids),
 * as float32 values (so float and base64 answers agree exactly).
 */
export function embeddingFor(item, dimensions = 8) {
  const seed = fnv1a(typeof item === 'string' ? item : JSON.stringify(item));
  const out = new Array(dimensions);
  let x = seed || 1;
  for (let i = 0; i < dimensions; i++) {
    // xorshift32: deterministic, cheap, spread over [-1, 1)
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    out[i] = Math.fround((x / 0x100000000) * 2 - 1);
  }
  return out;
}

/** Little-endian float32 base64, as OpenAI's encoding_format "base64". */
export function embeddingToBase64(vec) {
  const buf = Buffer.alloc(vec.length * 4);
  vec.forEach((v, i) => buf.writeFloatLE(v, i * 4));
  return buf.toString('base64');
}

/** Decodes an encoding_format "base64" embedding into numbers. */
export function embeddingFromBase64(b64) {
  const buf = Buffer.from(b64, 'base64');
  const out = [];
  for (let i = 0; i + 4 <= buf.length; i += 4) out.push(buf.readFloatLE(i));
  return out;
}

/** Polls fn() until it returns a truthy value; rejects after timeoutMs. */
export async function waitUntil(fn, timeoutMs = 2000, what = 'condition', intervalMs = 10) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

const B62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
function idFrom(seed, len) {
  let out = '';
  let h = createHash('sha256').update(seed).digest();
  while (out.length < len) {
    for (const b of h) {
      if (out.length >= len) break;
      out += B62[b % 62];
    }
    h = createHash('sha256').update(h).digest();
  }
  return out;
}
function uuidFrom(seed) {
  const h = createHash('sha256').update(seed).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

// Splits a text into stream pieces the way OpenAI does: "a b c" -> "a", " b", " c".
function streamPieces(text) {
  const out = text.match(/\s*\S+/g) || [];
  return out.length ? out : [text];
}

// Splits a JSON arguments string into fragments like OpenAI's streamed tool-call deltas.
function argumentFragments(args) {
  if (args.length <= 2) return [args];
  const out = [];
  const re = /("[^"]*"?|[^"]+)/g;
  let m;
  while ((m = re.exec(args))) out.push(m[0]);
  return out;
}

// The random padding OpenAI adds to stream chunks (clients must ignore it).
function obfuscation(ctx) {
  ctx.n = (ctx.n || 0) + 1;
  return idFrom(`${ctx.id}-${ctx.n}`, 2 + ((ctx.n * 7) % 13));
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (!ms || ms <= 0) return resolve();
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });
}

function isTokenArray(v) {
  return Array.isArray(v) && v.length > 0 && v.every((x) => Number.isInteger(x));
}

// ---------------------------------------------------------------------------------------------
// Error bodies in each service's shape

function oaError(message, type = 'invalid_request_error', param = null, code = null) {
  return { error: { message, type, param, code } };
}

function defaultErrorBody(flavor, status, ctx) {
  const model = ctx.model || 'gpt-4o';
  if (flavor === 'azure') {
    switch (status) {
      case 401:
        return { error: { code: '401', message: 'Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.' } };
      case 404:
        return { error: { code: 'DeploymentNotFound', message: 'The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again.' } };
      case 429:
        return { error: { code: '429', message: `Requests to the ChatCompletions_Create Operation under Azure OpenAI API version ${ctx.apiVersion || '2024-10-21'} have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 1 second. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit.` } };
      case 500:
        return oaError('The server had an error processing your request. Sorry about that! You can retry your request, or contact us through an Azure support request at: https://go.microsoft.com/fwlink/?linkid=2213926 if you keep seeing this error.', 'server_error');
      case 503:
        return { error: { code: 'ServiceUnavailable', message: 'The service is temporarily unable to process your request. Please try again later.' } };
      default:
        return oaError(`Simulated Azure OpenAI error ${status}.`, status >= 500 ? 'server_error' : 'invalid_request_error');
    }
  }
  switch (status) {
    case 400:
      return oaError("Invalid value for 'temperature': expected a number between 0 and 2.", 'invalid_request_error', 'temperature', 'invalid_value');
    case 401:
      return oaError('Incorrect API key provided: sk-sim***. You can find your API key at https://platform.openai.com/account/api-keys.', 'invalid_request_error', null, 'invalid_api_key');
    case 404:
      return oaError(`The model \`${model}\` does not exist or you do not have access to it.`, 'invalid_request_error', null, 'model_not_found');
    case 429:
      return oaError(`Rate limit reached for ${model} in organization org-sim on requests per min (RPM): Limit 500, Used 500, Requested 1. Please try again in 120ms. Visit https://platform.openai.com/account/rate-limits to learn more.`, 'requests', null, 'rate_limit_exceeded');
    case 500:
      return oaError('The server had an error while processing your request. Sorry about that!', 'server_error');
    case 502:
      return oaError('Bad gateway.', 'server_error', null, 'bad_gateway');
    case 503:
      return oaError('The engine is currently overloaded, please try again later.', 'server_error');
    default:
      return oaError(`Simulated error ${status}.`, status >= 500 ? 'server_error' : 'invalid_request_error');
  }
}

function maskKey(key) {
  if (typeof key !== 'string' || key.length === 0) return '';
  if (key.length <= 10) return `${key.slice(0, 3)}***`;
  return `${key.slice(0, 6)}***${key.slice(-4)}`;
}

// ---------------------------------------------------------------------------------------------

/**
 * Starts a simulator.
 * opts: { flavor: 'openai'|'azure'|'compatible', name, apiKey, apiVersion (azure classic),
 *         deployments (azure), models (openai/compatible: allowed model ids; omitted = any),
 *         port (default 0), host (default 127.0.0.1), quirks (a behaviour applied to every request
 *         that has no scripted behaviour), region (azure x-ms-region) }
 */
export async function startSim(opts = {}) {
  const flavor = opts.flavor || 'openai';
  if (!FLAVORS.has(flavor)) throw new Error(`unknown simulator flavor ${flavor}`);
  const sim = new Simulator({ ...opts, flavor });
  await sim.listen();
  return sim;
}

class Simulator extends EventEmitter {
  constructor(opts) {
    super();
    this.flavor = opts.flavor;
    this.name = opts.name || `${opts.flavor}-sim`;
    this.apiKey = opts.apiKey ?? (opts.flavor === 'compatible' ? undefined : `sim-key-${this.name}`);
    this.apiVersion = opts.apiVersion;
    this.deployments = opts.deployments || null;
    this.models = opts.models || null;
    this.host = opts.host || '127.0.0.1';
    this.wantedPort = opts.port || 0;
    this.quirks = opts.quirks || {};
    this.region = opts.region || 'East US';
    this.forbidden = [CLIENT_KEY, ...(opts.forbiddenSubstrings || [])];
    /** every request received, in arrival order */
    this.requests = [];
    /** every way a request was wrong (strings) */
    this.violations = [];
    /** requests whose client closed the connection before the response ended */
    this.closedEarly = [];
    this.queue = [];
    this.seq = 0;
    this.callSeq = 0;
    this.sockets = new Set();
    this.server = http.createServer({ keepAliveTimeout: 30_000 }, (req, res) => this.handle(req, res));
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    this.server.on('clientError', (err, socket) => {
      // only parse errors are the gateway's fault; resets and timeouts of idle sockets are not
      if (String(err.code || '').startsWith('HPE_')) {
        this.violations.push(`[${this.name}] malformed HTTP request: ${err.code} ${err.reason || err.message}`);
        if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
        return;
      }
      socket.destroy();
    });
  }

  listen() {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.wantedPort, this.host, () => {
        this.server.off('error', reject);
        this.port = this.server.address().port;
        const base = `http://${this.host}:${this.port}`;
        this.origin = base;
        this.url = this.flavor === 'azure' ? base : `${base}/v1`;
        resolve();
      });
    });
  }

  /** Scripts the next request(s); consumed FIFO, one per request (`times: N` repeats). */
  enqueue(behaviour) {
    const b = { ...behaviour };
    const times = b.times ?? 1;
    delete b.times;
    this.queue.push({ b, left: times });
    return this;
  }

  /** Forgets recorded requests, violations and queued behaviours. */
  reset() {
    this.requests.length = 0;
    this.violations.length = 0;
    this.closedEarly.length = 0;
    this.queue.length = 0;
  }

  get lastRequest() {
    return this.requests[this.requests.length - 1];
  }

  close() {
    this.closing = true;
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      for (const s of this.sockets) s.destroy();
      this.server.closeAllConnections?.();
    });
  }

  nextBehaviour() {
    const head = this.queue[0];
    if (!head) return { ...this.quirks };
    head.left -= 1;
    if (head.left <= 0) this.queue.shift();
    return { ...this.quirks, ...head.b };
  }

  violation(rec, msg) {
    const line = `[${this.name}] ${rec.method} ${rec.url}: ${msg}`;
    rec.violations.push(msg);
    this.violations.push(line);
  }

  // -------------------------------------------------------------------------------------------
  handle(req, res) {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('error', () => {});
    req.on('end', () => {
      const u = new URL(req.url, 'http://sim');
      const raw = Buffer.concat(chunks);
      const rec = {
        seq: ++this.seq,
        time: Date.now(),
        method: req.method,
        url: req.url,
        path: u.pathname,
        query: Object.fromEntries(u.searchParams),
        headers: { ...req.headers },
        rawHeaders: req.rawHeaders.slice(),
        httpVersion: req.httpVersion,
        body: raw.toString('utf8'),
        json: undefined,
        violations: [],
        status: undefined,
        answer: undefined,
        finished: false,
      };
      try {
        rec.json = raw.length ? JSON.parse(rec.body) : undefined;
      } catch {
        rec.json = undefined;
        rec.jsonError = true;
      }
      this.requests.push(rec);
      this.emit('request', rec);

      const ac = new AbortController();
      rec.abort = ac;
      res.on('close', () => {
        if (!res.writableFinished && !rec.reset && !this.closing) {
          rec.closedEarly = true;
          this.closedEarly.push(rec);
          ac.abort();
          this.emit('closedEarly', rec);
        }
      });
      res.on('finish', () => {
        rec.finished = true;
        this.emit('response', rec);
      });
      this.dispatch(rec, req, res, ac.signal).catch((err) => {
        this.violations.push(`[${this.name}] simulator error: ${err.stack || err}`);
        if (!res.headersSent) this.sendJson(rec, res, 500, oaError(`simulator crashed: ${err.message}`, 'server_error'));
        else res.destroy();
      });
    });
  }

  sendJson(rec, res, status, body, extraHeaders = {}) {
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    rec.status = status;
    rec.responseBody = text;
    rec.responseHeaders = {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
      ...this.commonHeaders(rec),
      ...extraHeaders,
    };
    res.writeHead(status, rec.responseHeaders);
    res.end(text);
  }

  commonHeaders(rec) {
    const rid = uuidFrom(`${this.name}-${rec.seq}`);
    if (this.flavor === 'openai') {
      return {
        'openai-version': '2020-10-01',
        'openai-processing-ms': '42',
        'openai-organization': 'org-sim',
        'x-request-id': `req_${rid.replace(/-/g, '')}`,
        'x-ratelimit-limit-requests': '500',
        'x-ratelimit-remaining-requests': '499',
        'x-ratelimit-reset-requests': '120ms',
        'x-ratelimit-limit-tokens': '30000',
        'x-ratelimit-remaining-tokens': '29950',
        'x-ratelimit-reset-tokens': '100ms',
      };
    }
    if (this.flavor === 'azure') {
      return {
        'apim-request-id': rid,
        'x-request-id': uuidFrom(`x-${this.name}-${rec.seq}`),
        'x-ms-region': this.region,
        'x-ms-rai-invoked': 'true',
        'x-ratelimit-remaining-requests': '99',
        'x-ratelimit-remaining-tokens': '99000',
        'x-content-type-options': 'nosniff',
        'strict-transport-security': 'max-age=31536000; includeSubDomains; preload',
      };
    }
    return {};
  }

  // Works out which endpoint a request is for; records violations for anything wrong.
  route(rec) {
    const { method, path } = rec;
    if (this.flavor === 'azure') {
      let m = path.match(/^\/openai\/deployments\/([^/]+)\/(chat\/completions|embeddings)$/);
      if (m) {
        return { surface: 'classic', deployment: decodeURIComponent(m[1]), op: m[2] === 'embeddings' ? 'embeddings' : 'chat', method: 'POST' };
      }
      m = path.match(/^\/openai\/v1\/(chat\/completions|embeddings)$/);
      if (m) return { surface: 'v1', op: m[1] === 'embeddings' ? 'embeddings' : 'chat', method: 'POST' };
      return null;
    }
    const prefix = '/v1';
    if (path === `${prefix}/chat/completions`) return { op: 'chat', method: 'POST' };
    if (path === `${prefix}/embeddings`) return { op: 'embeddings', method: 'POST' };
    if (path === `${prefix}/models`) return { op: 'models', method: 'GET' };
    void method;
    return null;
  }

  checkAuth(rec) {
    const h = rec.headers;
    const problems = [];
    for (const [k, v] of Object.entries(h)) {
      const vals = Array.isArray(v) ? v : [v];
      for (const val of vals) {
        for (const bad of this.forbidden) {
          if (String(val).includes(bad)) problems.push(`client credential forwarded in header ${k}`);
        }
      }
    }
    let status = 0;
    if (this.flavor === 'azure') {
      if (h.authorization !== undefined) problems.push(`an Authorization header was sent to Azure (only api-key may be): ${maskKey(h.authorization)}`);
      if (h['api-key'] === undefined) {
        problems.push('missing api-key header');
        status = 401;
      } else if (h['api-key'] !== this.apiKey) {
        problems.push(`wrong api-key header: ${maskKey(h['api-key'])}`);
        status = 401;
      }
    } else if (this.apiKey !== undefined) {
      if (h['api-key'] !== undefined) problems.push(`an api-key header was sent to an ${this.flavor} upstream`);
      if (h.authorization === undefined) {
        problems.push('missing Authorization header');
        status = 401;
      } else if (h.authorization !== `Bearer ${this.apiKey}`) {
        problems.push(`wrong Authorization header: ${maskKey(h.authorization)}`);
        status = 401;
      }
    } else {
      if (h.authorization !== undefined) problems.push(`an Authorization header was sent to a keyless upstream: ${maskKey(h.authorization)}`);
      if (h['api-key'] !== undefined) problems.push('an api-key header was sent to a keyless upstream');
    }
    return { problems, status };
  }

  authErrorBody(rec) {
    if (this.flavor === 'azure') return defaultErrorBody('azure', 401, {});
    const auth = rec.headers.authorization;
    if (auth === undefined) {
      return oaError("You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.");
    }
    const key = String(auth).replace(/^Bearer\s+/i, '');
    return oaError(`Incorrect API key provided: ${maskKey(key)}. You can find your API key at https://platform.openai.com/account/api-keys.`, 'invalid_request_error', null, 'invalid_api_key');
  }

  async dispatch(rec, req, res, signal) {
    const route = this.route(rec);
    if (!route) {
      this.violation(rec, `unexpected path ${rec.path}`);
      return this.sendJson(rec, res, 400, oaError(`cloudmux-sim ${this.name}: unexpected path ${rec.method} ${rec.path}`, 'invalid_request_error', null, 'sim_violation'));
    }
    rec.op = route.op;
    rec.surface = route.surface;
    rec.deployment = route.deployment;
    if (rec.method !== route.method) {
      this.violation(rec, `wrong method ${rec.method} (want ${route.method})`);
      return this.sendJson(rec, res, 400, oaError(`cloudmux-sim ${this.name}: wrong method ${rec.method} for ${rec.path}`, 'invalid_request_error', null, 'sim_violation'));
    }

    // --- auth
    const auth = this.checkAuth(rec);
    for (const p of auth.problems) this.violation(rec, p);
    if (auth.status) return this.sendJson(rec, res, auth.status, this.authErrorBody(rec));
    if (auth.problems.length) {
      return this.sendJson(rec, res, 400, oaError(`cloudmux-sim ${this.name}: ${auth.problems.join('; ')}`, 'invalid_request_error', null, 'sim_violation'));
    }

    if (route.op === 'models') return this.answerModels(rec, res);

    // --- request shape
    const problems = [];
    const ct = String(rec.headers['content-type'] || '');
    if (!/^application\/json\s*(;|$)/i.test(ct)) problems.push(`Content-Type is "${ct}", want application/json`);
    if (route.surface === 'classic') {
      const v = rec.query['api-version'];
      if (v === undefined) problems.push('missing api-version query parameter');
      else if (this.apiVersion !== undefined && v !== this.apiVersion) problems.push(`api-version is ${v}, want ${this.apiVersion}`);
    }
    const body = rec.json;
    if (rec.jsonError) problems.push('body is not valid JSON');
    else if (body === null || typeof body !== 'object' || Array.isArray(body)) problems.push('body is not a JSON object');

    let notFound = null;
    if (!problems.length) {
      const modelRequired = !(this.flavor === 'azure' && route.surface === 'classic');
      if (modelRequired) {
        if (typeof body.model !== 'string' || !body.model) problems.push('missing "model"');
      }
      if (this.flavor === 'azure') {
        const dep = route.surface === 'classic' ? route.deployment : body.model;
        if (typeof dep === 'string' && this.deployments && !this.deployments.includes(dep)) {
          notFound = `deployment "${dep}" does not exist (have ${this.deployments.join(', ')})`;
        }
      } else if (typeof body.model === 'string' && this.models && !this.models.includes(body.model)) {
        notFound = `model "${body.model}" is not served here (have ${this.models.join(', ')})`;
      }
      if (route.op === 'chat') {
        if (!Array.isArray(body.messages) || body.messages.length === 0) problems.push('missing or empty "messages"');
        if (body.stream === true) {
          if (!body.stream_options || body.stream_options.include_usage !== true) {
            problems.push('stream: true without stream_options.include_usage: true (the gateway must always ask for usage)');
          }
        } else if (body.stream_options !== undefined && body.stream_options !== null) {
          problems.push("stream_options sent without stream: true (OpenAI answers 400: The 'stream_options' parameter is only allowed when 'stream' is enabled)");
        }
      } else if (route.op === 'embeddings') {
        const inp = body.input;
        const ok =
          typeof inp === 'string' ||
          (Array.isArray(inp) && inp.length > 0 &&
            (inp.every((x) => typeof x === 'string') || isTokenArray(inp) || inp.every(isTokenArray)));
        if (!ok) problems.push('"input" must be a string, string[], int[] or int[][]');
      }
    }
    for (const p of problems) this.violation(rec, p);
    if (problems.length) {
      return this.sendJson(rec, res, 400, oaError(`cloudmux-sim ${this.name}: ${problems.join('; ')}`, 'invalid_request_error', null, 'sim_violation'));
    }
    if (notFound) {
      this.violation(rec, notFound);
      return this.sendJson(rec, res, 404, defaultErrorBody(this.flavor, 404, { model: body.model }));
    }

    // --- scripted behaviour
    const b = this.nextBehaviour();
    rec.behaviour = b;
    if (b.delayMs) await sleep(b.delayMs, signal);
    if (signal.aborted) return;

    if (b.echoKeyInError) {
      const key = this.apiKey || 'no-key-configured';
      const status = b.status || 401;
      const msg =
        this.flavor === 'azure'
          ? `Access denied due to invalid subscription key ${key}. Make sure to provide a valid key for an active subscription.`
          : `Incorrect API key provided: ${key}. You can find your API key at https://platform.openai.com/account/api-keys.`;
      const bodyOut = this.flavor === 'azure' ? { error: { code: String(status), message: msg } } : oaError(msg, 'invalid_request_error', null, 'invalid_api_key');
      return this.sendJson(rec, res, status, bodyOut, b.headers || {});
    }
    if (b.contentFilter && this.flavor === 'azure') {
      return this.sendJson(rec, res, 400, {
        error: {
          message: "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry. To learn more about our content filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766",
          type: null,
          param: 'prompt',
          code: 'content_filter',
          status: 400,
          innererror: {
            code: 'ResponsibleAIPolicyViolation',
            content_filter_result: { ...AZURE_PROMPT_FILTER(), violence: { filtered: true, severity: 'medium' } },
          },
        },
      }, b.headers || {});
    }
    if (b.status === 200 && b.body !== undefined) {
      return this.sendJson(rec, res, 200, b.body, b.headers || {});
    }
    if (b.status && b.status !== 200) {
      const defaults = {};
      if (b.status === 429) {
        if (this.flavor === 'azure') {
          defaults['retry-after'] = '1';
          defaults['retry-after-ms'] = '1000';
        } else if (this.flavor === 'openai') {
          defaults['x-ratelimit-remaining-requests'] = '0';
        }
      }
      let errBody = b.body !== undefined ? b.body : defaultErrorBody(this.flavor, b.status, { model: body.model, apiVersion: rec.query['api-version'] });
      return this.sendJson(rec, res, b.status, errBody, { ...defaults, ...(b.headers || {}) });
    }

    if (route.op === 'embeddings') return this.answerEmbeddings(rec, res, body, b);
    return this.answerChat(rec, res, body, b, signal);
  }

  answerModels(rec, res) {
    const ids = this.models || ['gpt-4o'];
    this.sendJson(rec, res, 200, {
      object: 'list',
      data: ids.map((id) => ({ id, object: 'model', created: 1715367049, owned_by: this.flavor === 'openai' ? 'system' : 'vllm' })),
    });
  }

  answerEmbeddings(rec, res, body, b) {
    const inp = body.input;
    const items = typeof inp === 'string' ? [inp] : isTokenArray(inp) ? [inp] : inp;
    const dims = Number.isInteger(body.dimensions) && body.dimensions > 0 ? body.dimensions : 8;
    const b64 = body.encoding_format === 'base64';
    let promptTokens = 0;
    const data = items.map((item, index) => {
      promptTokens += typeof item === 'string' ? Math.max(1, countWords(item)) : item.length;
      const vec = embeddingFor(item, dims);
      return { object: 'embedding', index, embedding: b64 ? embeddingToBase64(vec) : vec };
    });
    const usage = { prompt_tokens: promptTokens, total_tokens: promptTokens };
    rec.answer = { kind: 'embeddings', count: items.length, dimensions: dims, usage };
    const model = this.flavor === 'azure' ? (rec.deployment ? 'text-embedding-3-small' : body.model) : body.model;
    this.sendJson(rec, res, 200, { object: 'list', data, model, usage: b.noUsage ? undefined : usage }, b.headers || {});
  }

  // Decides what the assistant says: a tool call, or text.
  plan(body, b) {
    const msgs = body.messages;
    const last = msgs[msgs.length - 1] || {};
    const tools = Array.isArray(body.tools) ? body.tools.filter((t) => t && t.type === 'function' && t.function) : [];
    const choice = body.tool_choice;
    if (tools.length && choice !== 'none' && last.role === 'user') {
      let tool = tools[0];
      if (choice && typeof choice === 'object' && choice.function?.name) {
        tool = tools.find((t) => t.function.name === choice.function.name) || tool;
      }
      const props = tool.function.parameters?.properties || {};
      const args = 'city' in props ? '{"city":"Paris"}' : '{}';
      const id = `call_${++this.callSeq}`;
      return { kind: 'tool', toolCalls: [{ id, type: 'function', function: { name: tool.function.name, arguments: args } }] };
    }
    let text;
    if (last.role === 'tool') {
      text = `The tool returned: ${contentText(last.content)}`;
    } else {
      const lastUser = [...msgs].reverse().find((m) => m && m.role === 'user');
      text = `echo: ${lastUser ? contentText(lastUser.content) : ''}`;
    }
    if (b.chunks) {
      // pad so the stream has at least `chunks` content chunks
      let pieces = streamPieces(text);
      let i = 1;
      while (pieces.length < b.chunks) {
        text += ` (${i++})`;
        pieces = streamPieces(text);
      }
    }
    return { kind: 'text', text };
  }

  usageFor(body, plan) {
    let prompt = 3;
    for (const m of body.messages) {
      prompt += 4 + countWords(contentText(m?.content));
      if (Array.isArray(m?.tool_calls)) prompt += m.tool_calls.length * 8;
    }
    if (Array.isArray(body.tools)) prompt += body.tools.length * 20;
    const completion =
      plan.kind === 'tool'
        ? plan.toolCalls.reduce((n, c) => n + 6 + Math.ceil(c.function.arguments.length / 4), 0)
        : Math.max(1, countWords(plan.text));
    return {
      prompt_tokens: prompt,
      completion_tokens: completion,
      total_tokens: prompt + completion,
      prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
      completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
    };
  }

  async answerChat(rec, res, body, b, signal) {
    const plan = this.plan(body, b);
    const usage = this.usageFor(body, plan);
    // scripted usage details (the ledger's tests): cached prompt tokens, reasoning tokens (part of
    // completion_tokens, as OpenAI counts them)
    if (b.cachedTokens) usage.prompt_tokens_details.cached_tokens = Math.min(b.cachedTokens, usage.prompt_tokens);
    if (b.reasoningTokens) {
      usage.completion_tokens_details.reasoning_tokens = b.reasoningTokens;
      usage.completion_tokens += b.reasoningTokens;
      usage.total_tokens += b.reasoningTokens;
    }
    const created = Math.floor(Date.now() / 1000);
    const id = this.flavor === 'compatible' ? `chatcmpl-${idFrom(`${this.name}-${rec.seq}`, 32).toLowerCase()}` : `chatcmpl-${idFrom(`${this.name}-${rec.seq}`, 29)}`;
    const model = this.flavor === 'azure' ? 'gpt-4o-2024-11-20' : body.model;
    const fp = `fp_${idFrom(`fp-${this.name}`, 10).toLowerCase()}`;
    const ctx = { id, created, model, fp, noIdCreated: !!b.noIdCreated };
    rec.answer = { ...plan, usage, id };
    if (body.stream === true && !b.ignoreStream) return this.streamChat(rec, res, body, b, plan, usage, ctx, signal);

    const finish = plan.kind === 'tool' ? 'tool_calls' : 'stop';
    let out;
    if (this.flavor === 'azure') {
      const message =
        plan.kind === 'tool'
          ? { annotations: [], content: null, refusal: null, role: 'assistant', tool_calls: plan.toolCalls }
          : { annotations: [], content: plan.text, refusal: null, role: 'assistant' };
      out = {
        choices: [{ content_filter_results: plan.kind === 'tool' ? {} : AZURE_CHOICE_FILTER(), finish_reason: finish, index: 0, logprobs: null, message }],
        created,
        id,
        model,
        object: 'chat.completion',
        prompt_filter_results: [{ prompt_index: 0, content_filter_results: AZURE_PROMPT_FILTER() }],
        system_fingerprint: fp,
        usage: {
          completion_tokens: usage.completion_tokens,
          completion_tokens_details: usage.completion_tokens_details,
          prompt_tokens: usage.prompt_tokens,
          prompt_tokens_details: usage.prompt_tokens_details,
          total_tokens: usage.total_tokens,
        },
      };
    } else if (this.flavor === 'openai') {
      const message =
        plan.kind === 'tool'
          ? { role: 'assistant', content: null, tool_calls: plan.toolCalls, refusal: null, annotations: [] }
          : { role: 'assistant', content: plan.text, refusal: null, annotations: [] };
      out = {
        id,
        object: 'chat.completion',
        created,
        model,
        choices: [{ index: 0, message, logprobs: null, finish_reason: finish }],
        usage,
        service_tier: 'default',
        system_fingerprint: fp,
      };
    } else {
      // vLLM-like
      const message =
        plan.kind === 'tool'
          ? { role: 'assistant', reasoning_content: null, content: null, tool_calls: plan.toolCalls }
          : { role: 'assistant', reasoning_content: null, content: plan.text, tool_calls: [] };
      out = {
        id,
        object: 'chat.completion',
        created,
        model,
        choices: [{ index: 0, message, logprobs: null, finish_reason: finish, stop_reason: null }],
        usage: b.noUsage ? undefined : usage,
        prompt_logprobs: null,
      };
    }
    if (b.noIdCreated) {
      delete out.id;
      delete out.created;
    }
    this.sendJson(rec, res, 200, out, b.headers || {});
  }

  chunk(ctx, choices, extra = {}) {
    const f = this.flavor;
    if (f === 'azure') {
      // Azure serialises keys alphabetically
      const o = { choices, created: ctx.created, id: ctx.id, model: ctx.model, obfuscation: obfuscation(ctx), object: 'chat.completion.chunk', system_fingerprint: ctx.fp };
      if ('usage' in extra) o.usage = extra.usage;
      if (ctx.noIdCreated) { delete o.id; delete o.created; }
      return o;
    }
    const o = { id: ctx.id, object: 'chat.completion.chunk', created: ctx.created, model: ctx.model };
    if (f === 'openai') {
      o.service_tier = 'default';
      o.system_fingerprint = ctx.fp;
    }
    o.choices = choices;
    if ('usage' in extra) o.usage = extra.usage;
    if (f === 'openai') o.obfuscation = obfuscation(ctx);
    if (ctx.noIdCreated) { delete o.id; delete o.created; }
    return o;
  }

  choice(delta, finish = null, filter) {
    if (this.flavor === 'azure') {
      return { content_filter_results: filter ?? {}, delta, finish_reason: finish, index: 0, logprobs: null };
    }
    return { index: 0, delta, logprobs: null, finish_reason: finish };
  }

  buildEvents(body, b, plan, usage, ctx) {
    const wantUsage = body.stream_options?.include_usage === true && !b.noUsage;
    // OpenAI sends "usage": null on every chunk when include_usage is on; Azure too; vLLM does not.
    const perChunk = wantUsage && this.flavor !== 'compatible' ? { usage: null } : {};
    const ev = [];
    const push = (o) => ev.push(JSON.stringify(o));
    if (this.flavor === 'azure') {
      push({ choices: [], created: 0, id: '', model: '', object: '', prompt_filter_results: [{ prompt_index: 0, content_filter_results: AZURE_PROMPT_FILTER() }] });
    }
    if (plan.kind === 'text') {
      const first = this.flavor === 'azure' ? { content: '', refusal: null, role: 'assistant' } : this.flavor === 'openai' ? { role: 'assistant', content: '', refusal: null } : { role: 'assistant', content: '' };
      push(this.chunk(ctx, [this.choice(first)], perChunk));
      for (const p of streamPieces(plan.text)) {
        push(this.chunk(ctx, [this.choice({ content: p }, null, AZURE_CHOICE_FILTER())], perChunk));
      }
      push(this.chunk(ctx, [this.choice({}, 'stop')], perChunk));
    } else {
      plan.toolCalls.forEach((tc, index) => {
        if (b.wholeToolCall) {
          const delta = { tool_calls: [{ id: tc.id, function: { name: tc.function.name, arguments: tc.function.arguments }, index, type: 'function' }] };
          if (index === 0) delta.role = 'assistant';
          push(this.chunk(ctx, [this.choice(delta)], perChunk));
          return;
        }
        const head = { index, id: tc.id, type: 'function', function: { name: tc.function.name, arguments: '' } };
        const delta = index === 0 ? { role: 'assistant', content: null, tool_calls: [head], refusal: null } : { tool_calls: [head] };
        push(this.chunk(ctx, [this.choice(delta)], perChunk));
        for (const frag of argumentFragments(tc.function.arguments)) {
          push(this.chunk(ctx, [this.choice({ tool_calls: [{ index, function: { arguments: frag } }] })], perChunk));
        }
      });
      push(this.chunk(ctx, [this.choice({}, 'tool_calls')], perChunk));
    }
    if (wantUsage) push(this.chunk(ctx, [], { usage }));
    if (!b.noDone) ev.push('[DONE]');
    return ev;
  }

  async streamChat(rec, res, body, b, plan, usage, ctx, signal) {
    const events = this.buildEvents(body, b, plan, usage, ctx);
    rec.status = 200;
    rec.events = [];
    rec.responseHeaders = {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      ...this.commonHeaders(rec),
      ...(b.headers || {}),
    };
    res.writeHead(200, rec.responseHeaders);
    res.flushHeaders();
    const write = (text) => new Promise((resolve) => res.write(text, () => resolve()));
    let n = 0;
    for (const data of events) {
      if (signal.aborted) return;
      if (n > 0 && b.paceMs) await sleep(b.paceMs, signal);
      if (signal.aborted) return;
      if (b.errorAfterChunks !== undefined && n === b.errorAfterChunks) {
        const err = b.streamError || oaError('The server had an error while processing your request. Sorry about that!', 'server_error');
        await write(`data: ${JSON.stringify(err)}\n\n`);
        rec.events.push('error');
        res.end();
        return;
      }
      if (b.resetAfterChunks !== undefined && n === b.resetAfterChunks) return this.resetSocket(rec, res, b);
      if (b.hangAfterChunks !== undefined && n === b.hangAfterChunks) {
        rec.hung = true;
        return; // keep the socket open; the client or sim.close() ends it
      }
      await write(`data: ${data}\n\n`);
      rec.events.push(data);
      n++;
    }
    if (b.resetAfterChunks !== undefined && n === b.resetAfterChunks) return this.resetSocket(rec, res, b);
    if (b.hangAfterChunks !== undefined && n === b.hangAfterChunks) {
      rec.hung = true;
      return;
    }
    res.end();
  }

  async resetSocket(rec, res, b) {
    // let the chunks already written reach the peer before the RST discards anything queued
    await sleep(Math.max(b.paceMs || 0, 30));
    rec.reset = true;
    const s = res.socket;
    if (!s) return;
    if (typeof s.resetAndDestroy === 'function') s.resetAndDestroy();
    else s.destroy();
  }
}
