// Anthropic Messages API simulator for cloudmux's tests.
//
//   const sim = await startAnthropicSim({ name, apiKey });   sim.url = base URL
//
// Checks every POST /v1/messages: x-api-key, anthropic-version: 2023-06-01, JSON content type,
// and the body shape (model, max_tokens integer, messages alternating user/assistant starting
// with user, content blocks text/image/tool_use/tool_result with their fields, system as a
// string or blocks, tools with input_schema, tool_choice types; no OpenAI-only fields).
// Answers deterministically: the last user text echoed, a tool_use block when tools are offered
// and the last turn is not a tool result, a description of images. Streams are named SSE events
// (message_start, content_block_*, ping, message_delta, message_stop).
// Behaviours (sim.enqueue): {status, error} an error answer ({type:error, error:{type,message}});
// {overloaded: true} 529 overloaded_error; {throttle: seconds} 429 rate_limit_error with retry-after; {spendLimit: true} 429 with
// enforced_spend_limit_reached; {paceMs}; {resetAfterEvents}; {inbandErrorAfter: n}
// an `event: error` overloaded_error after n events.

import { SimBase, countWords } from './simbase.mjs';

const BLOCK_TYPES = new Set(['text', 'image', 'tool_use', 'tool_result', 'document', 'thinking']);
const ALLOWED = new Set(['model', 'max_tokens', 'messages', 'system', 'temperature', 'top_p', 'top_k', 'stop_sequences', 'stream', 'tools', 'tool_choice', 'metadata', 'thinking', 'service_tier']);

export function anthropicError(type, message) {
  return { type: 'error', error: { type, message } };
}

class AnthropicSim extends SimBase {
  constructor(o) {
    super(o.name || 'anthropic');
    this.apiKey = o.apiKey;
    this.seq = 0;
  }

  get url() {
    return this.origin;
  }

  async handle(rec, res) {
    if (rec.method !== 'POST' || rec.path !== '/v1/messages') {
      this.violate(rec, 'unexpected URL');
      return this.json(res, 404, anthropicError('not_found_error', 'Not found'));
    }
    if (rec.headers['x-api-key'] !== this.apiKey) {
      this.violate(rec, 'x-api-key is wrong or missing');
      return this.json(res, 401, anthropicError('authentication_error', 'invalid x-api-key'));
    }
    if (rec.headers.authorization) this.violate(rec, 'an Authorization header was forwarded');
    if (rec.headers['anthropic-version'] !== '2023-06-01') this.violate(rec, `anthropic-version ${rec.headers['anthropic-version']}`);
    if (!/^application\/json/.test(rec.headers['content-type'] || '')) this.violate(rec, 'content-type');
    try {
      rec.body = JSON.parse(rec.text);
    } catch {
      this.violate(rec, 'body is not JSON');
      return this.json(res, 400, anthropicError('invalid_request_error', 'bad JSON'));
    }
    const b = this.next();
    if (b.throttle !== undefined) return this.json(res, 429, anthropicError('rate_limit_error', 'Number of request tokens has exceeded your per-minute rate limit.'), { 'retry-after': String(b.throttle), 'anthropic-ratelimit-requests-remaining': '0' });
    if (b.overloaded) return this.json(res, 529, anthropicError('overloaded_error', 'Overloaded'));
    if (b.spendLimit) return this.json(res, 429, { type: 'error', error: { type: 'rate_limit_error', message: 'You have reached your specified workspace API usage limits.', error_code: 'enforced_spend_limit_reached' } }, { 'retry-after': '1' });
    if (b.status) return this.json(res, b.status, b.error || anthropicError('api_error', 'Internal server error'));
    this.check(rec);
    if (rec.violations.length) return this.json(res, 400, anthropicError('invalid_request_error', rec.violations.join('; ')));
    const body = rec.body;
    const answer = this.answer(body);
    const id = `msg_sim${++this.seq}`;
    const input = countWords(JSON.stringify(body.messages));
    const out = countWords(answer.text || 'tool');
    const usage = { input_tokens: input, cache_creation_input_tokens: 3, cache_read_input_tokens: 5, output_tokens: out };
    const content = answer.tool ? [{ type: 'text', text: 'Let me check.' }, { type: 'tool_use', id: `toolu_sim${this.seq}`, name: answer.tool.name, input: answer.tool.input }] : [{ type: 'text', text: answer.text }];
    const stop = answer.tool ? 'tool_use' : 'end_turn';
    if (!body.stream) return this.json(res, 200, { id, type: 'message', role: 'assistant', model: body.model, content, stop_reason: stop, stop_sequence: null, usage }, { 'request-id': `req_${id}` });
    const ev = (type, data) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
    const frames = [ev('message_start', { message: { id, type: 'message', role: 'assistant', model: body.model, content: [], stop_reason: null, stop_sequence: null, usage: { ...usage, output_tokens: 1 } } })];
    content.forEach((blk, index) => {
      if (blk.type === 'text') {
        frames.push(ev('content_block_start', { index, content_block: { type: 'text', text: '' } }));
        frames.push(ev('ping', {}));
        for (const w of blk.text.split(/(?<= )/)) frames.push(ev('content_block_delta', { index, delta: { type: 'text_delta', text: w } }));
      } else {
        frames.push(ev('content_block_start', { index, content_block: { type: 'tool_use', id: blk.id, name: blk.name, input: {} } }));
        const js = JSON.stringify(blk.input);
        frames.push(ev('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json: '' } }));
        for (let i = 0; i < js.length; i += 5) frames.push(ev('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json: js.slice(i, i + 5) } }));
      }
      frames.push(ev('content_block_stop', { index }));
    });
    frames.push(ev('message_delta', { delta: { stop_reason: stop, stop_sequence: null }, usage: { output_tokens: out } }));
    frames.push(ev('message_stop', {}));
    let list = frames;
    if (b.inbandErrorAfter !== undefined) list = [...frames.slice(0, b.inbandErrorAfter), `event: error\ndata: ${JSON.stringify(anthropicError('overloaded_error', 'Overloaded'))}\n\n`];
    return this.stream(rec, res, list, b, { 'request-id': `req_${id}` });
  }

  check(rec) {
    const body = rec.body;
    for (const k of Object.keys(body)) if (!ALLOWED.has(k)) this.violate(rec, `unexpected field ${k}`);
    if (typeof body.model !== 'string') this.violate(rec, 'model');
    if (!Number.isInteger(body.max_tokens) || body.max_tokens < 1) this.violate(rec, 'max_tokens is required (integer >= 1)');
    if (body.system !== undefined && typeof body.system !== 'string' && !Array.isArray(body.system)) this.violate(rec, 'system');
    if (!Array.isArray(body.messages) || !body.messages.length) return this.violate(rec, 'messages');
    if (body.messages[0].role !== 'user') this.violate(rec, 'the first message must be from the user');
    const toolIds = new Set();
    body.messages.forEach((m, i) => {
      if (m.role !== 'user' && m.role !== 'assistant') this.violate(rec, `role ${m.role}`);
      if (i > 0 && body.messages[i - 1].role === m.role) this.violate(rec, 'roles must alternate');
      const blocks = typeof m.content === 'string' ? [] : m.content;
      if (!Array.isArray(blocks)) return this.violate(rec, 'content');
      for (const blk of blocks) {
        if (!BLOCK_TYPES.has(blk.type)) this.violate(rec, `block type ${blk.type}`);
        if (blk.type === 'text' && typeof blk.text !== 'string') this.violate(rec, 'text block');
        if (blk.type === 'image') {
          const s = blk.source || {};
          if (!(s.type === 'base64' && typeof s.media_type === 'string' && typeof s.data === 'string') && !(s.type === 'url' && typeof s.url === 'string')) this.violate(rec, 'image source');
        }
        if (blk.type === 'tool_use') {
          if (m.role !== 'assistant' || typeof blk.id !== 'string' || typeof blk.name !== 'string' || typeof blk.input !== 'object' || Array.isArray(blk.input)) this.violate(rec, 'tool_use block');
          toolIds.add(blk.id);
        }
        if (blk.type === 'tool_result' && (m.role !== 'user' || !toolIds.has(blk.tool_use_id))) this.violate(rec, 'tool_result must answer an earlier tool_use in a user turn');
      }
    });
    for (const t of body.tools || []) if (typeof t.name !== 'string' || typeof t.input_schema !== 'object') this.violate(rec, 'tool needs name and input_schema');
    if (body.tool_choice && !['auto', 'any', 'tool', 'none'].includes(body.tool_choice.type)) this.violate(rec, `tool_choice.type ${body.tool_choice.type}`);
    if (body.tool_choice?.type === 'tool' && typeof body.tool_choice.name !== 'string') this.violate(rec, 'tool_choice.name');
  }

  answer(body) {
    const last = body.messages[body.messages.length - 1];
    const blocks = typeof last.content === 'string' ? [{ type: 'text', text: last.content }] : last.content;
    const tr = blocks.find((b) => b.type === 'tool_result');
    if (tr) return { text: `The tool said ${typeof tr.content === 'string' ? tr.content : JSON.stringify(tr.content)}` };
    if (body.tools?.length && body.tool_choice?.type !== 'none') {
      const name = body.tool_choice?.type === 'tool' ? body.tool_choice.name : body.tools[0].name;
      return { tool: { name, input: { city: 'Paris' } } };
    }
    const img = blocks.find((b) => b.type === 'image');
    if (img) return { text: img.source.type === 'base64' ? `I see an image (${img.source.media_type}, ${Buffer.from(img.source.data, 'base64').length} bytes)` : `I see an image at ${img.source.url}` };
    const text = blocks.filter((b) => b.type === 'text').map((b) => b.text).join(' ');
    const sys = typeof body.system === 'string' ? ` [system: ${body.system}]` : '';
    return { text: `Claude echo: ${text}${sys}` };
  }
}

export async function startAnthropicSim(opts = {}) {
  const sim = new AnthropicSim(opts);
  await sim.listen();
  return sim;
}
