// Writes the Bedrock stub's answers, derived from the plain stub's fixtures so that both
// paths carry the same text: converse.json (a Converse answer) and stream.bin (a
// ConverseStream event stream: messageStart, one contentBlockDelta per content delta of
// fixtures/stream.sse, contentBlockStop, messageStop, metadata), encoded with AWS's own
// @smithy/eventstream-codec.   node bench/bedrock/stub-bodies.mjs OUTDIR
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EventStreamCodec } from '@smithy/eventstream-codec';
import { toUtf8, fromUtf8 } from '@smithy/util-utf8';

const here = dirname(fileURLToPath(import.meta.url));
const fx = join(here, '../peers/fixtures');
const out = process.argv[2] || '.';
mkdirSync(out, { recursive: true });

const completion = JSON.parse(readFileSync(join(fx, 'completion.json'), 'utf8'));
const text = completion.choices[0].message.content;
const u = completion.usage;
writeFileSync(
  join(out, 'converse.json'),
  JSON.stringify({
    metrics: { latencyMs: 312 },
    output: { message: { role: 'assistant', content: [{ text }] } },
    stopReason: 'end_turn',
    usage: { inputTokens: u.prompt_tokens, outputTokens: u.completion_tokens, totalTokens: u.total_tokens, cacheReadInputTokens: 0, cacheWriteInputTokens: 0 },
  }),
);

const deltas = readFileSync(join(fx, 'stream.sse'), 'utf8')
  .split('\n\n')
  .filter((e) => e.startsWith('data: {'))
  .map((e) => JSON.parse(e.slice(6)).choices?.[0]?.delta?.content)
  .filter((c) => typeof c === 'string' && c.length > 0);
const codec = new EventStreamCodec(toUtf8, fromUtf8);
const frame = (type, payload) =>
  Buffer.from(
    codec.encode({
      headers: {
        ':event-type': { type: 'string', value: type },
        ':content-type': { type: 'string', value: 'application/json' },
        ':message-type': { type: 'string', value: 'event' },
      },
      body: fromUtf8(JSON.stringify(payload)),
    }),
  );
const frames = [frame('messageStart', { p: 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVW', role: 'assistant' })];
for (const d of deltas) frames.push(frame('contentBlockDelta', { contentBlockIndex: 0, delta: { text: d }, p: 'abcdefghijklmnopqrstu' }));
frames.push(frame('contentBlockStop', { contentBlockIndex: 0, p: 'abcdefghijklmnopqrstuvwxyzABC' }));
frames.push(frame('messageStop', { p: 'abcdefghijklmnopqrst', stopReason: 'end_turn' }));
frames.push(frame('metadata', { metrics: { latencyMs: 640 }, p: 'abcdefghijkl', usage: { inputTokens: u.prompt_tokens, outputTokens: u.completion_tokens, totalTokens: u.total_tokens } }));
const bin = Buffer.concat(frames);
writeFileSync(join(out, 'stream.bin'), bin);
console.log(`${frames.length} frames, ${bin.length} bytes; ${deltas.length} text deltas`);
