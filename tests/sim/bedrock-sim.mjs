// AWS Bedrock runtime simulator for cloudmux's e2e tests: Converse, ConverseStream and InvokeModel
// (Titan Text Embeddings v2, Cohere Embed) on 127.0.0.1.
//
// It is strict the way AWS is:
//   - every request's SigV4 signature is recomputed with AWS's own signer (@smithy/signature-v4)
//     over exactly the headers the request says it signed; a wrong one is answered 403
//     InvalidSignatureException (x-amzn-ErrorType), a stale X-Amz-Date 403 too, a missing or
//     wrong session token 403 UnrecognizedClientException; Bedrock API keys (Bearer) are checked
//     when the simulator has one;
//   - request bodies are validated against the botocore shapes in shared/specs/bedrock (copied
//     in tests/fixtures/aws/bedrock-runtime.service-2.json): unknown members, missing required
//     ones, wrong types, unions with more than one member, enums; problems become violations
//     and a 400 ValidationException;
//   - streams are encoded with AWS's own @smithy/eventstream-codec (with Bedrock's "p" padding
//     field), and can be split into random pieces at any byte.
// Scripted behaviours (sim.enqueue): { throttle }, { status, errorType, message },
// { streamException: 'throttlingException', afterEvents: N }, { badCrc: N }, { cutAfter: N },
// { split: 'random' | 'bytes' }, { delayMs }, { cache: { read, write } }.

import http from 'node:http';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { SignatureV4 } from '@smithy/signature-v4';
import { EventStreamCodec } from '@smithy/eventstream-codec';
import { toUtf8, fromUtf8 } from '@smithy/util-utf8';
import { Sha256 } from '@aws-crypto/sha256-js';
import { embeddingFor, countWords } from './openai-sim.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const SHAPES = JSON.parse(readFileSync(join(HERE, '../fixtures/aws/bedrock-runtime.service-2.json'), 'utf8')).shapes;
const codec = new EventStreamCodec(toUtf8, fromUtf8);

export const AWS_CREDS = {
  accessKeyId: 'AKIASIMULATOREXAMPLE',
  secretAccessKey: 'SIMSECRET/aws/K7MDENG+bPxRfiCYEXAMPLEKEY',
  sessionToken: 'IQoJb3JpZ2luX2VjSIMSECRETsessiontoken//+==',
};
export const BEDROCK_API_KEY = 'ABSKQmVkcm9ja0FQSUtleSIMSECRET-bedrock-key';

// ---------------------------------------------------------------------------------------------
// botocore shape validation

function validate(shapeName, value, path, out, depth = 0) {
  const shape = SHAPES[shapeName];
  if (!shape) return out.push(`${path}: unknown shape ${shapeName}`);
  if (depth > 40) return;
  if (shape.document) return; // free-form JSON (a tool's input schema, additional fields)
  switch (shape.type) {
    case 'structure': {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) return out.push(`${path}: expected an object (${shapeName})`);
      const members = shape.members || {};
      for (const k of Object.keys(value)) {
        if (!members[k]) out.push(`${path}.${k}: not a member of ${shapeName}`);
        else if (members[k].location) out.push(`${path}.${k}: belongs in the ${members[k].location}, not the body`);
        else validate(members[k].shape, value[k], `${path}.${k}`, out, depth + 1);
      }
      for (const r of shape.required || []) if (!members[r]?.location && value[r] === undefined) out.push(`${path}.${r}: required by ${shapeName}`);
      if (shape.union && Object.keys(value).length !== 1) out.push(`${path}: union ${shapeName} needs exactly one member, has ${Object.keys(value).length}`);
      return;
    }
    case 'list':
      if (!Array.isArray(value)) return out.push(`${path}: expected a list (${shapeName})`);
      if (shape.min !== undefined && value.length < shape.min) out.push(`${path}: at least ${shape.min} items`);
      if (shape.max !== undefined && value.length > shape.max) out.push(`${path}: at most ${shape.max} items`);
      value.forEach((v, i) => validate(shape.member.shape, v, `${path}[${i}]`, out, depth + 1));
      return;
    case 'map':
      if (value === null || typeof value !== 'object' || Array.isArray(value)) return out.push(`${path}: expected a map`);
      for (const [k, v] of Object.entries(value)) validate(shape.value.shape, v, `${path}.${k}`, out, depth + 1);
      return;
    case 'string':
      if (typeof value !== 'string') return out.push(`${path}: expected a string (${shapeName})`);
      if (shape.enum && !shape.enum.includes(value)) out.push(`${path}: "${value}" not in ${shapeName} enum`);
      if (shape.min !== undefined && value.length < shape.min) out.push(`${path}: shorter than ${shape.min}`);
      if (shape.max !== undefined && value.length > shape.max) out.push(`${path}: longer than ${shape.max}`);
      if (shape.pattern && !new RegExp(shape.pattern, 'u').test(value)) out.push(`${path}: "${value}" does not match ${shape.pattern}`);
      return;
    case 'integer':
    case 'long':
      if (!Number.isInteger(value)) return out.push(`${path}: expected an integer (${shapeName})`);
      if (shape.min !== undefined && value < shape.min) out.push(`${path}: below ${shape.min}`);
      if (shape.max !== undefined && value > shape.max) out.push(`${path}: above ${shape.max}`);
      return;
    case 'float':
    case 'double':
      if (typeof value !== 'number') return out.push(`${path}: expected a number (${shapeName})`);
      if (shape.min !== undefined && value < shape.min) out.push(`${path}: below ${shape.min}`);
      if (shape.max !== undefined && value > shape.max) out.push(`${path}: above ${shape.max}`);
      return;
    case 'boolean':
      if (typeof value !== 'boolean') out.push(`${path}: expected a boolean`);
      return;
    case 'blob':
      if (typeof value !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(value) || value.length % 4) out.push(`${path}: expected base64 bytes`);
      return;
    case 'document':
      return;
    case 'timestamp':
      return;
    default:
      out.push(`${path}: unhandled shape type ${shape.type}`);
  }
}

/** Problems of a body for an operation's input shape (members with a location excluded). */
export function validateBody(inputShape, body) {
  const out = [];
  validate(inputShape, body, '$', out);
  return out;
}

function validateInvoke(modelId, body) {
  const out = [];
  if (modelId.includes('titan-embed')) {
    if (typeof body.inputText !== 'string' || !body.inputText) out.push('titan: inputText must be a non-empty string');
    for (const k of Object.keys(body)) if (!['inputText', 'dimensions', 'normalize', 'embeddingTypes'].includes(k)) out.push(`titan: unknown field ${k}`);
    if (body.dimensions !== undefined && ![256, 512, 1024].includes(body.dimensions)) out.push('titan: dimensions must be 256, 512 or 1024');
    if (body.normalize !== undefined && typeof body.normalize !== 'boolean') out.push('titan: normalize must be a boolean');
  } else if (modelId.includes('cohere.embed')) {
    if (!Array.isArray(body.texts) || body.texts.length < 1 || body.texts.length > 96) out.push('cohere: texts must hold 1..96 strings');
    else if (body.texts.some((t) => typeof t !== 'string')) out.push('cohere: texts must be strings');
    if (!['search_document', 'search_query', 'classification', 'clustering'].includes(body.input_type)) out.push('cohere: input_type is required');
    for (const k of Object.keys(body)) if (!['texts', 'input_type', 'truncate', 'embedding_types', 'images', 'output_dimension'].includes(k)) out.push(`cohere: unknown field ${k}`);
  } else {
    out.push(`InvokeModel for ${modelId} is not simulated`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// SigV4 verification with AWS's own signer

function parseAuth(h) {
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$/.exec(h || '');
  if (!m) return null;
  return { akid: m[1], day: m[2], region: m[3], service: m[4], signed: m[5].split(';'), signature: m[6] };
}

function amzDateToDate(s) {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s || '');
  return m ? new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6])) : null;
}

// ---------------------------------------------------------------------------------------------

export async function startBedrockSim(opts = {}) {
  const sim = new BedrockSim(opts);
  await sim.listen();
  return sim;
}

class BedrockSim {
  constructor(opts) {
    this.name = opts.name || 'bedrock-sim';
    this.region = opts.region || 'us-east-1';
    this.creds = opts.creds === undefined ? AWS_CREDS : opts.creds; // null: SigV4 refused
    this.apiKey = opts.apiKey ?? null; // Bedrock API key accepted as Bearer
    this.skewMs = opts.skewMs ?? 5 * 60_000;
    this.requests = [];
    this.violations = [];
    this.queue = [];
    this.signatureChecks = 0;
    this.sockets = new Set();
    this.server = http.createServer({ keepAliveTimeout: 30_000 }, (req, res) => this.handle(req, res));
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  listen() {
    return new Promise((resolve) => {
      this.server.listen(0, '127.0.0.1', () => {
        this.port = this.server.address().port;
        this.url = `http://127.0.0.1:${this.port}`;
        resolve();
      });
    });
  }

  enqueue(b) {
    const times = b.times ?? 1;
    this.queue.push({ b: { ...b }, left: times });
    return this;
  }

  reset() {
    this.requests.length = 0;
    this.violations.length = 0;
    this.queue.length = 0;
  }

  get lastRequest() {
    return this.requests[this.requests.length - 1];
  }

  close() {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      for (const s of this.sockets) s.destroy();
    });
  }

  nextBehaviour() {
    const head = this.queue[0];
    if (!head) return {};
    if (--head.left <= 0) this.queue.shift();
    return head.b;
  }

  error(res, status, type, message) {
    res.writeHead(status, { 'content-type': 'application/json', 'x-amzn-errortype': `${type}:http://internal.amazon.com/coral/com.amazon.bedrock/`, 'x-amzn-requestid': 'sim-req' });
    res.end(JSON.stringify({ message }));
  }

  async authenticate(req, body, rec) {
    const auth = req.headers.authorization || '';
    if (auth.startsWith('Bearer ')) {
      rec.auth = 'bearer';
      if (!this.apiKey || auth.slice(7) !== this.apiKey) return [403, 'UnrecognizedClientException', 'The security token included in the request is invalid.'];
      return null;
    }
    rec.auth = 'sigv4';
    const a = parseAuth(auth);
    if (!a) return [403, 'IncompleteSignatureException', 'Authorization header requires Credential, SignedHeaders and Signature.'];
    if (!this.creds || a.akid !== this.creds.accessKeyId) return [403, 'UnrecognizedClientException', 'The security token included in the request is invalid.'];
    if (a.region !== this.region || a.service !== 'bedrock') return [403, 'InvalidSignatureException', `Credential should be scoped to a valid region and service bedrock, got ${a.region}/${a.service}.`];
    for (const must of ['host', 'x-amz-date']) if (!a.signed.includes(must)) return [403, 'InvalidSignatureException', `'${must}' must be a signed header.`];
    const date = amzDateToDate(req.headers['x-amz-date']);
    if (!date || a.day !== req.headers['x-amz-date'].slice(0, 8)) return [403, 'InvalidSignatureException', 'X-Amz-Date is missing or does not match the credential scope.'];
    if (Math.abs(Date.now() - date.getTime()) > this.skewMs) return [403, 'InvalidSignatureException', 'Signature expired: the request time is too far from the server time.'];
    const token = req.headers['x-amz-security-token'];
    if ((this.creds.sessionToken || null) !== (token || null)) return [403, 'UnrecognizedClientException', 'The security token included in the request is invalid.'];
    // exactly the headers the request claims to have signed, with the values it sent
    const headers = {};
    for (const h of a.signed) {
      if (req.headers[h] === undefined) return [403, 'InvalidSignatureException', `Signed header ${h} is missing from the request.`];
      headers[h] = req.headers[h];
    }
    const signer = new SignatureV4({ service: 'bedrock', region: this.region, sha256: Sha256, applyChecksum: false, credentials: this.creds });
    const signed = await signer.sign(
      { method: req.method, protocol: 'http:', hostname: '127.0.0.1', path: req.url.split('?')[0], query: {}, headers, body },
      { signingDate: date, signableHeaders: new Set(a.signed) },
    );
    this.signatureChecks++;
    const want = parseAuth(signed.headers.authorization);
    if (!want || want.signature !== a.signature || want.signed.join(';') !== a.signed.join(';'))
      return [403, 'InvalidSignatureException', 'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.'];
    return null;
  }

  async handle(req, res) {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks).toString('utf8');
    const rec = { method: req.method, url: req.url, headers: req.headers, body, json: null, violations: [] };
    this.requests.push(rec);
    const flag = (m) => {
      rec.violations.push(m);
      this.violations.push(`[${this.name}] ${req.method} ${req.url}: ${m}`);
    };
    try {
      const m = /^\/model\/([^/]+)\/(converse|converse-stream|invoke)$/.exec(req.url);
      if (req.method !== 'POST' || !m) {
        flag('unknown operation');
        return this.error(res, 404, 'UnknownOperationException', 'Unknown operation');
      }
      rec.modelId = decodeURIComponent(m[1]);
      rec.op = m[2];
      if (/[:/]/.test(m[1])) flag(`model id not URI-encoded in the path: ${m[1]}`);
      const denied = await this.authenticate(req, body, rec);
      if (denied) {
        rec.denied = denied[1];
        return this.error(res, ...denied);
      }
      const ct = req.headers['content-type'];
      if (ct !== 'application/json') flag(`content-type ${ct}`);
      try {
        rec.json = JSON.parse(body);
      } catch {
        flag('body is not JSON');
        return this.error(res, 400, 'ValidationException', 'Malformed input request.');
      }
      const problems = rec.op === 'invoke' ? validateInvoke(rec.modelId, rec.json) : validateBody(rec.op === 'converse' ? 'ConverseRequest' : 'ConverseStreamRequest', rec.json);
      if (problems.length) {
        problems.forEach(flag);
        return this.error(res, 400, 'ValidationException', problems.join('; '));
      }
      if (rec.op !== 'invoke') {
        const roleProblems = checkConversation(rec.json);
        if (roleProblems.length) {
          roleProblems.forEach(flag);
          return this.error(res, 400, 'ValidationException', roleProblems.join('; '));
        }
      }
      const b = this.nextBehaviour();
      rec.behaviour = b;
      if (b.delayMs) await new Promise((r) => setTimeout(r, b.delayMs));
      if (b.throttle) return this.error(res, 429, 'ThrottlingException', 'Too many requests, please wait before trying again.');
      if (b.status) return this.error(res, b.status, b.errorType || 'InternalServerException', b.message || 'simulated failure');
      if (rec.op === 'invoke') return this.invoke(rec, res);
      const answer = this.answer(rec.json, b);
      if (rec.op === 'converse') {
        res.writeHead(200, { 'content-type': 'application/json', 'x-amzn-requestid': 'sim-req' });
        return res.end(JSON.stringify(converseBody(answer)));
      }
      return this.stream(res, answer, b);
    } catch (err) {
      this.violations.push(`[${this.name}] simulator error: ${err.stack || err}`);
      if (!res.headersSent) this.error(res, 500, 'InternalServerException', 'simulator error');
      else res.destroy();
    }
  }

  /** What the "model" says: deterministic from the conversation. */
  answer(json, b) {
    const msgs = json.messages;
    const last = msgs[msgs.length - 1];
    const results = last.content.filter((c) => c.toolResult);
    const inputWords = msgs.flatMap((m) => m.content).map((c) => countWords(c.text || '')).reduce((x, y) => x + y, 0);
    const usage = { inputTokens: inputWords, outputTokens: 0, totalTokens: 0 };
    if (b.cache) {
      usage.cacheReadInputTokens = b.cache.read || 0;
      usage.cacheWriteInputTokens = b.cache.write || 0;
    }
    let blocks;
    let stopReason = 'end_turn';
    if (results.length) {
      const said = results.map((r) => r.toolResult.content.map((c) => c.text ?? JSON.stringify(c.json)).join(' ')).join(' | ');
      blocks = [{ text: `The tool said: ${said}` }];
    } else if (json.toolConfig && (json.toolConfig.toolChoice?.any || json.toolConfig.toolChoice?.tool || /weather|tool/i.test(last.content.map((c) => c.text || '').join(' ')))) {
      const spec = json.toolConfig.toolChoice?.tool ? json.toolConfig.tools.find((t) => t.toolSpec.name === json.toolConfig.toolChoice.tool.name) : json.toolConfig.tools[0];
      const props = spec.toolSpec.inputSchema.json.properties || {};
      const input = {};
      for (const k of Object.keys(props)) input[k] = 'Oslo';
      blocks = [{ text: 'Let me check.' }, { toolUse: { toolUseId: `tooluse_${Math.random().toString(36).slice(2, 10)}`, name: spec.toolSpec.name, input } }];
      stopReason = 'tool_use';
    } else {
      const texts = last.content.filter((c) => c.text).map((c) => c.text);
      const images = last.content.filter((c) => c.image).map((c) => `${c.image.format} image of ${Buffer.from(c.image.source.bytes, 'base64').length} bytes`);
      let text = `You said: ${texts.join(' ')}`;
      if (images.length) text += ` and sent a ${images.join(', ')}`;
      const max = json.inferenceConfig?.maxTokens;
      if (max && countWords(text) > max) {
        text = text.split(/\s+/).slice(0, max).join(' ');
        stopReason = 'max_tokens';
      }
      blocks = [{ text }];
    }
    usage.outputTokens = blocks.map((c) => countWords(c.text || JSON.stringify(c.toolUse?.input || ''))).reduce((x, y) => x + y, 0);
    usage.totalTokens = usage.inputTokens + usage.outputTokens + (usage.cacheReadInputTokens || 0) + (usage.cacheWriteInputTokens || 0);
    return { blocks, stopReason, usage };
  }

  stream(res, answer, b) {
    const events = [['messageStart', { role: 'assistant' }]];
    answer.blocks.forEach((blk, i) => {
      if (blk.text !== undefined) {
        const words = blk.text.split(/(?<= )/);
        for (const w of words) events.push(['contentBlockDelta', { contentBlockIndex: i, delta: { text: w } }]);
      } else {
        events.push(['contentBlockStart', { contentBlockIndex: i, start: { toolUse: { toolUseId: blk.toolUse.toolUseId, name: blk.toolUse.name } } }]);
        const s = JSON.stringify(blk.toolUse.input);
        const cut = Math.floor(s.length / 2);
        events.push(['contentBlockDelta', { contentBlockIndex: i, delta: { toolUse: { input: s.slice(0, cut) } } }]);
        events.push(['contentBlockDelta', { contentBlockIndex: i, delta: { toolUse: { input: s.slice(cut) } } }]);
      }
      events.push(['contentBlockStop', { contentBlockIndex: i }]);
    });
    events.push(['messageStop', { stopReason: answer.stopReason }]);
    events.push(['metadata', { usage: answer.usage, metrics: { latencyMs: 42 } }]);
    const frames = [];
    for (let i = 0; i < events.length; i++) {
      if (b.streamException && i === (b.afterEvents ?? 2)) {
        frames.push(encodeFrame('exception', b.streamException, { message: `${b.streamException} raised by the simulator` }));
        break;
      }
      if (b.cutAfter !== undefined && i === b.cutAfter) break;
      let f = encodeFrame('event', events[i][0], { ...events[i][1], p: 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJ'.slice(0, (i * 7) % 30) });
      if (b.badCrc !== undefined && i === b.badCrc) {
        f = Buffer.from(f);
        f[f.length - 6] ^= 0x01; // a payload byte: the message CRC no longer matches
      }
      frames.push(f);
    }
    res.writeHead(200, { 'content-type': 'application/vnd.amazon.eventstream', 'x-amzn-requestid': 'sim-req' });
    const all = Buffer.concat(frames);
    const pieces = [];
    if (b.split === 'bytes') for (let i = 0; i < all.length; i++) pieces.push(all.subarray(i, i + 1));
    else if (b.split === 'random') {
      let at = 0;
      while (at < all.length) {
        const n = 1 + Math.floor(Math.random() * 40);
        pieces.push(all.subarray(at, at + n));
        at += n;
      }
    } else pieces.push(...frames);
    const cutTransport = b.cutAfter !== undefined;
    let i = 0;
    const next = () => {
      if (i >= pieces.length) {
        if (cutTransport) res.socket?.destroy(); // the connection drops mid-stream
        else res.end();
        return;
      }
      res.write(pieces[i++]);
      setTimeout(next, b.split ? 0 : 1);
    };
    next();
  }

  invoke(rec, res) {
    const id = rec.modelId;
    if (id.includes('titan-embed')) {
      const dims = rec.json.dimensions || 8;
      res.writeHead(200, { 'content-type': 'application/json', 'x-amzn-bedrock-input-token-count': String(countWords(rec.json.inputText)) });
      return res.end(JSON.stringify({ embedding: embeddingFor(rec.json.inputText, dims), inputTextTokenCount: countWords(rec.json.inputText) }));
    }
    const embs = rec.json.texts.map((t) => embeddingFor(t, rec.json.output_dimension || 8));
    const tokens = rec.json.texts.map(countWords).reduce((x, y) => x + y, 0);
    res.writeHead(200, { 'content-type': 'application/json', 'x-amzn-bedrock-input-token-count': String(tokens) });
    const wantsTypes = Array.isArray(rec.json.embedding_types);
    res.end(JSON.stringify({ id: 'sim-embed', texts: rec.json.texts, embeddings: wantsTypes ? { float: embs } : embs, response_type: wantsTypes ? 'embeddings_by_type' : 'embeddings_floats' }));
  }
}

/** Converse's rules beyond the shapes: starts with user, roles alternate, toolConfig present for tool blocks. */
function checkConversation(json) {
  const out = [];
  const msgs = json.messages;
  if (msgs[0]?.role !== 'user') out.push('A conversation must start with a user message.');
  for (let i = 1; i < msgs.length; i++) if (msgs[i].role === msgs[i - 1].role) out.push(`messages[${i}]: roles must alternate`);
  const hasTools = msgs.some((m) => m.content.some((c) => c.toolUse || c.toolResult));
  if (hasTools && !json.toolConfig) out.push('toolConfig field must be defined when using toolUse and toolResult content blocks.');
  msgs.forEach((m, i) => m.content.forEach((c, k) => {
    if (c.text !== undefined && c.text === '') out.push(`messages[${i}].content[${k}]: text must not be empty`);
    if (c.image && m.role !== 'user') out.push(`messages[${i}]: images only in user messages`);
  }));
  return out;
}

function encodeFrame(kind, type, payload) {
  const headers = {
    [kind === 'event' ? ':event-type' : ':exception-type']: { type: 'string', value: type },
    ':content-type': { type: 'string', value: 'application/json' },
    ':message-type': { type: 'string', value: kind },
  };
  return Buffer.from(codec.encode({ headers, body: fromUtf8(JSON.stringify(payload)) }));
}

function converseBody(answer) {
  return {
    metrics: { latencyMs: 40 },
    output: { message: { role: 'assistant', content: answer.blocks } },
    stopReason: answer.stopReason,
    usage: answer.usage,
  };
}
