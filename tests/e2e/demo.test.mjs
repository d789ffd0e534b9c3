// examples/demo.yaml in front of the demo simulators (tests/sim/demo.mjs), as `make run` starts
// them, but on free ports: every configured model answers through the SDK, streaming included.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { startSim } from '../sim/openai-sim.mjs';
import { demoSpecs } from '../sim/demo.mjs';
import { startGateway, freePort, REPO_ROOT } from './lib/gateway.mjs';
import { sdk } from './lib/stack.mjs';

const T = { timeout: 20_000 };
const DEMO = join(REPO_ROOT, 'examples/demo.yaml');
const skip = existsSync(DEMO) ? false : 'examples/demo.yaml not present';
let sims = [];
let gw;
let client;

before(async () => {
  if (skip) return;
  const ports = { DEMO_OPENAI_PORT: await freePort(), DEMO_AZURE_PORT: await freePort(), DEMO_COMPAT_PORT: await freePort() };
  for (const spec of demoSpecs(ports)) sims.push(await startSim(spec));
  let yaml = await readFile(DEMO, 'utf8');
  yaml = yaml
    .replaceAll('127.0.0.1:18081', `127.0.0.1:${ports.DEMO_OPENAI_PORT}`)
    .replaceAll('127.0.0.1:18082', `127.0.0.1:${ports.DEMO_AZURE_PORT}`)
    .replaceAll('127.0.0.1:18083', `127.0.0.1:${ports.DEMO_COMPAT_PORT}`);
  gw = await startGateway({ config: yaml });
  client = sdk(gw);
});
after(async () => {
  await gw?.kill();
  await Promise.all(sims.map((s) => s.close()));
  const report = gw?.sanitizerReport();
  if (report) throw new Error(`cloudmux reported a memory/UB error during the run or at shutdown:\n${report}`);
});

test('every model in examples/demo.yaml answers (chat, stream, embeddings)', { ...T, skip }, async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.ok(ids.length > 0);
  for (const id of ids) {
    if (/embed/.test(id)) {
      const e = await client.embeddings.create({ model: id, input: ['demo one', 'demo two'] });
      assert.equal(e.data.length, 2, id);
      continue;
    }
    const res = await client.chat.completions.create({ model: id, messages: [{ role: 'user', content: `hello ${id}` }] });
    assert.equal(res.choices[0].message.content, `echo: hello ${id}`, id);
    let text = '';
    for await (const c of await client.chat.completions.create({ model: id, messages: [{ role: 'user', content: 'stream please' }], stream: true })) {
      text += c.choices?.[0]?.delta?.content ?? '';
    }
    assert.equal(text, 'echo: stream please', id);
  }
  const violations = sims.flatMap((s) => s.violations);
  assert.deepEqual(violations, []);
  assert.ok(sims.every((s) => s.requests.length > 0) || sims.length === 0, 'every demo simulator was used');
});
