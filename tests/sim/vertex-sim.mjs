// Google Vertex AI (Gemini) simulator for cloudmux's tests.
//
//   const sim = await startVertexSim({ name, project, region, publicKey, clientEmail, kid,
//                                      accessToken, tokenTtlS });
//   sim.url (the endpoint override), sim.tokenUri (its own OAuth token endpoint)
//
// Token endpoint (POST /token): checks the form (grant_type jwt-bearer), verifies the JWT
// assertion's RS256 signature against the test's public key with `jose`, and its header (kid)
// and claims (iss, scope cloud-platform, aud = token_uri, iat, exp <= iat + 3600); issues a
// fresh bearer token (expires_in tokenTtlS) and counts exchanges (sim.tokenRequests).
// Model endpoints check the bearer token on every call (one it issued and not expired, or the
// configured fixed accessToken), the URL (project, region, publisher model, method, alt=sse
// for streams) and the body shape (proto3 JSON: contents/parts, systemInstruction, tools,
// toolConfig, generationConfig; no OpenAI fields), recording problems in sim.violations.
// Answers are deterministic: the last user text echoed, a functionCall when tools are offered
// (and the last turn is not a function response), a description of inline images; streams are
// SSE with CRLF framing (LF with {lf: true}), cumulative usageMetadata, no [DONE], EOF ends.
// Behaviours (sim.enqueue): {status, error} google.rpc error; {throttle: retryDelay} 429
// RESOURCE_EXHAUSTED with RetryInfo; {paceMs}; {resetAfterEvents}; {lf}; {tokenStatus} for the
// next token exchange; {inbandError: n} an error object after n events; {garbageAfter: n} an
// event that is not JSON after n events.

import { jwtVerify, decodeProtectedHeader } from 'jose';
import { SimBase, countWords } from './simbase.mjs';
import { embeddingFor } from './openai-sim.mjs';

const SCOPE = 'https://www.googleapis.com/auth/cloud-platform';
const ROLES = new Set(['user', 'model']);
const PART_KEYS = new Set(['text', 'inlineData', 'fileData', 'functionCall', 'functionResponse', 'thought', 'thoughtSignature']);
const GEN_KEYS = new Set(['temperature', 'topP', 'topK', 'candidateCount', 'maxOutputTokens', 'stopSequences', 'presencePenalty', 'frequencyPenalty', 'seed', 'responseMimeType', 'responseJsonSchema', 'thinkingConfig']);
const TOP_KEYS = new Set(['contents', 'systemInstruction', 'tools', 'toolConfig', 'generationConfig', 'safetySettings', 'labels']);

export function rpcError(code, status, message, details = []) {
  return { error: { code, message, status, details } };
}

class VertexSim extends SimBase {
  constructor(o) {
    super(o.name || 'vertex');
    this.project = o.project || 'sim-project';
    this.region = o.region || 'us-central1';
    this.publicKey = o.publicKey;
    this.clientEmail = o.clientEmail;
    this.kid = o.kid;
    this.accessToken = o.accessToken;
    this.tokenTtlS = o.tokenTtlS ?? 3599;
    this.tokens = new Map(); // token -> expiry ms
    this.tokenRequests = 0;
    this.tokenQueue = [];
    this.seq = 0;
  }

  get url() {
    return this.origin;
  }

  get tokenUri() {
    return `${this.origin}/token`;
  }

  async handle(rec, res) {
    if (rec.path === '/token') return this.token(rec, res);
    const auth = rec.headers.authorization || '';
    const tok = auth.startsWith('Bearer ') ? auth.slice(7) : '';
    const exp = this.tokens.get(tok);
    const ok = (tok && tok === this.accessToken) || (exp !== undefined && exp > Date.now());
    if (!ok) {
      this.violate(rec, `bad or expired bearer token ${JSON.stringify(tok.slice(0, 12))}`);
      return this.json(res, 401, rpcError(401, 'UNAUTHENTICATED', 'Request had invalid authentication credentials.'));
    }
    const m = rec.path.match(/^\/v1\/projects\/([^/]+)\/locations\/([^/]+)\/publishers\/google\/models\/([^/:]+):(generateContent|streamGenerateContent|predict)$/);
    if (rec.method !== 'POST' || !m) {
      this.violate(rec, 'unexpected URL');
      return this.json(res, 404, rpcError(404, 'NOT_FOUND', 'not found'));
    }
    const [, project, region, model, method] = m;
    if (project !== this.project) this.violate(rec, `project ${project}`);
    if (region !== this.region) this.violate(rec, `region ${region}`);
    if (!/^application\/json/.test(rec.headers['content-type'] || '')) this.violate(rec, 'content-type');
    const stream = method === 'streamGenerateContent';
    if (stream !== (rec.url.searchParams.get('alt') === 'sse')) this.violate(rec, 'alt=sse goes with streamGenerateContent');
    try {
      rec.body = JSON.parse(rec.text);
    } catch {
      this.violate(rec, 'body is not JSON');
      return this.json(res, 400, rpcError(400, 'INVALID_ARGUMENT', 'Invalid JSON payload received.'));
    }
    rec.model = model;
    const b = this.next();
    if (b.throttle !== undefined) {
      return this.json(res, 429, rpcError(429, 'RESOURCE_EXHAUSTED', 'Quota exceeded for aiplatform.googleapis.com/generate_content_requests_per_minute_per_project_per_base_model.', [
        { '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: b.throttle },
      ]));
    }
    if (b.status) return this.json(res, b.status, b.error || rpcError(b.status, 'INTERNAL', 'Internal error encountered.'));
    if (method === 'predict') return this.predict(rec, res);
    this.checkGenerate(rec);
    if (rec.violations.length) return this.json(res, 400, rpcError(400, 'INVALID_ARGUMENT', rec.violations.join('; ')));
    const answer = this.answer(rec.body);
    const id = `sim-resp-${++this.seq}`;
    const prompt = countWords(JSON.stringify(rec.body.contents));
    if (!stream) {
      const parts = answer.call ? [{ functionCall: answer.call }] : [{ text: answer.text }];
      return this.json(res, 200, {
        candidates: [{ content: { role: 'model', parts }, finishReason: 'STOP', index: 0 }],
        usageMetadata: { promptTokenCount: prompt, candidatesTokenCount: countWords(answer.text || 'call'), thoughtsTokenCount: 2, totalTokenCount: prompt + countWords(answer.text || 'call') + 2, cachedContentTokenCount: 1 },
        modelVersion: model,
        responseId: id,
      });
    }
    const nl = b.lf ? '\n' : '\r\n';
    const frames = [];
    const words = answer.call ? [] : answer.text.split(/(?<= )/);
    let done = 0;
    const usage = () => ({ promptTokenCount: prompt, candidatesTokenCount: done, thoughtsTokenCount: 2, totalTokenCount: prompt + done + 2 });
    for (const w of words) {
      done++;
      frames.push({ candidates: [{ content: { role: 'model', parts: [{ text: w }] }, index: 0 }], usageMetadata: usage(), modelVersion: model, responseId: id });
    }
    if (answer.call) {
      done++;
      frames.push({ candidates: [{ content: { role: 'model', parts: [{ functionCall: answer.call }] }, index: 0 }], usageMetadata: usage(), modelVersion: model, responseId: id });
    }
    frames.push({ candidates: [{ content: { role: 'model', parts: [{ text: '' }] }, finishReason: 'STOP', index: 0 }], usageMetadata: usage(), modelVersion: model, responseId: id });
    let out = frames.map((f) => `data: ${JSON.stringify(f)}${nl}${nl}`);
    if (b.garbageAfter !== undefined) out = [...out.slice(0, b.garbageAfter), `data: {"candidates":[{"content":${nl}${nl}`, ...out.slice(b.garbageAfter)];
    if (b.inbandError !== undefined) out = [...out.slice(0, b.inbandError), `data: ${JSON.stringify(rpcError(503, 'UNAVAILABLE', 'The model is overloaded.'))}${nl}${nl}`];
    return this.stream(rec, res, out, b);
  }

  checkGenerate(rec) {
    const body = rec.body;
    for (const k of Object.keys(body)) if (!TOP_KEYS.has(k)) this.violate(rec, `unexpected top-level field ${k}`);
    if (!Array.isArray(body.contents) || !body.contents.length) return this.violate(rec, 'contents must be a non-empty array');
    for (const c of body.contents) {
      if (!ROLES.has(c.role)) this.violate(rec, `role ${c.role}`);
      if (!Array.isArray(c.parts) || !c.parts.length) this.violate(rec, 'parts must be a non-empty array');
      for (const p of c.parts || []) {
        const keys = Object.keys(p);
        if (!keys.length || keys.some((k) => !PART_KEYS.has(k))) this.violate(rec, `bad part ${JSON.stringify(p).slice(0, 80)}`);
        if (p.inlineData && (typeof p.inlineData.mimeType !== 'string' || typeof p.inlineData.data !== 'string')) this.violate(rec, 'inlineData needs mimeType and data');
        if (p.functionResponse && (typeof p.functionResponse.name !== 'string' || typeof p.functionResponse.response !== 'object' || Array.isArray(p.functionResponse.response))) this.violate(rec, 'functionResponse needs a name and an object response');
        if (p.functionCall && (typeof p.functionCall.name !== 'string' || typeof p.functionCall.args !== 'object')) this.violate(rec, 'functionCall needs name and args');
        if (p.functionResponse && c.role !== 'user') this.violate(rec, 'functionResponse belongs in a user turn');
        if (p.functionCall && c.role !== 'model') this.violate(rec, 'functionCall belongs in a model turn');
      }
    }
    if (body.systemInstruction && !Array.isArray(body.systemInstruction.parts)) this.violate(rec, 'systemInstruction.parts');
    for (const k of Object.keys(body.generationConfig || {})) if (!GEN_KEYS.has(k)) this.violate(rec, `generationConfig.${k}`);
    for (const t of body.tools || []) {
      for (const f of t.functionDeclarations || []) {
        if (typeof f.name !== 'string') this.violate(rec, 'functionDeclarations[].name');
        if (f.parameters) this.violate(rec, 'use parametersJsonSchema (JSON Schema), not parameters (OpenAPI subset)');
      }
    }
    const fcc = body.toolConfig?.functionCallingConfig;
    if (fcc && !['AUTO', 'ANY', 'NONE', 'VALIDATED'].includes(fcc.mode)) this.violate(rec, `functionCallingConfig.mode ${fcc.mode}`);
  }

  answer(body) {
    const last = body.contents[body.contents.length - 1];
    const fr = last.parts.find((p) => p.functionResponse);
    if (fr) return { text: `The tool ${fr.functionResponse.name} said ${JSON.stringify(fr.functionResponse.response)}` };
    const decls = (body.tools || []).flatMap((t) => t.functionDeclarations || []);
    const mode = body.toolConfig?.functionCallingConfig?.mode;
    if (decls.length && mode !== 'NONE') {
      const allowed = body.toolConfig?.functionCallingConfig?.allowedFunctionNames;
      const name = allowed?.[0] || decls[0].name;
      return { call: { name, args: { city: 'Paris' } } };
    }
    const img = last.parts.find((p) => p.inlineData);
    if (img) return { text: `I see an image (${img.inlineData.mimeType}, ${Buffer.from(img.inlineData.data, 'base64').length} bytes)` };
    const text = last.parts.filter((p) => typeof p.text === 'string').map((p) => p.text).join(' ');
    const sys = body.systemInstruction ? ` [system: ${body.systemInstruction.parts.map((p) => p.text).join(' ')}]` : '';
    return { text: `Gemini echo: ${text}${sys}` };
  }

  predict(rec, res) {
    const inst = rec.body.instances;
    if (!Array.isArray(inst) || !inst.length || inst.some((i) => typeof i.content !== 'string')) {
      this.violate(rec, 'instances[].content');
      return this.json(res, 400, rpcError(400, 'INVALID_ARGUMENT', 'bad instances'));
    }
    const dims = rec.body.parameters?.outputDimensionality ?? 8;
    return this.json(res, 200, {
      predictions: inst.map((i) => ({ embeddings: { values: embeddingFor(i.content, dims), statistics: { token_count: countWords(i.content), truncated: false } } })),
      metadata: { billableCharacterCount: inst.reduce((n, i) => n + i.content.length, 0) },
    });
  }

  async token(rec, res) {
    this.tokenRequests++;
    const b = this.tokenQueue.shift() || {};
    if (b.delayMs) await new Promise((r) => setTimeout(r, b.delayMs));
    const form = new URLSearchParams(rec.text);
    const fail = (msg) => {
      this.violate(rec, msg);
      return this.json(res, 400, { error: 'invalid_grant', error_description: msg });
    };
    if (rec.method !== 'POST') return fail('token endpoint needs POST');
    if (!/^application\/x-www-form-urlencoded/.test(rec.headers['content-type'] || '')) return fail('token request must be form-encoded');
    if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer') return fail(`grant_type ${form.get('grant_type')}`);
    const jwt = form.get('assertion') || '';
    let payload, header;
    try {
      header = decodeProtectedHeader(jwt);
      ({ payload } = await jwtVerify(jwt, this.publicKey, { algorithms: ['RS256'], audience: this.tokenUri, issuer: this.clientEmail, clockTolerance: 60 }));
    } catch (err) {
      return fail(`assertion does not verify: ${err.code || err.message}`);
    }
    if (header.typ !== 'JWT') return fail('header typ must be JWT');
    if (header.kid !== this.kid) return fail(`header kid ${header.kid} is not the key's private_key_id`);
    if (payload.scope !== SCOPE) return fail(`scope ${payload.scope}`);
    if (typeof payload.iat !== 'number' || typeof payload.exp !== 'number' || payload.exp - payload.iat > 3600 || payload.exp <= payload.iat) return fail('iat/exp');
    if (Math.abs(payload.iat * 1000 - Date.now()) > 120_000) return fail('iat is not now');
    rec.assertion = { header, payload };
    if (b.tokenStatus) return this.json(res, b.tokenStatus, { error: 'server_error' });
    const token = `ya29.sim-${this.tokenRequests}-${Math.random().toString(36).slice(2)}`;
    this.tokens.set(token, Date.now() + this.tokenTtlS * 1000);
    this.lastToken = token;
    return this.json(res, 200, { access_token: token, expires_in: this.tokenTtlS, token_type: 'Bearer' });
  }

  /** Scripts the next token exchange: {tokenStatus, delayMs}. */
  enqueueToken(b) {
    this.tokenQueue.push(b);
    return this;
  }

  /** Forgets every issued token (the next model call with an old one is refused). */
  revokeAll() {
    this.tokens.clear();
  }
}

export async function startVertexSim(opts = {}) {
  const sim = new VertexSim(opts);
  await sim.listen();
  return sim;
}
