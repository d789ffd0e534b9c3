#!/usr/bin/env node
// Local provider simulators for `make run` (examples/demo.yaml is written against exactly these):
//   openai      http://127.0.0.1:18081/v1  key sk-demo-openai   models gpt-4o, gpt-4o-mini, text-embedding-3-small
//   azure       http://127.0.0.1:18082     key demo-azure-key   api-version 2024-10-21, deployments gpt4o-prod, embed-prod
//   compatible  http://127.0.0.1:18083/v1  no key               model llama-3.1-8b
// Runs until SIGTERM/SIGINT; every request a simulator finds wrong is logged to stderr.
// Ports can be moved with DEMO_OPENAI_PORT / DEMO_AZURE_PORT / DEMO_COMPAT_PORT.

import { pathToFileURL } from 'node:url';
import { startSim } from './openai-sim.mjs';

/** The demo simulators (ports overridable by environment), as startSim() options. */
export function demoSpecs(env = process.env) {
  return [
    {
      flavor: 'openai',
      name: 'demo-openai',
      port: Number(env.DEMO_OPENAI_PORT || 18081),
      apiKey: 'sk-demo-openai',
      models: ['gpt-4o', 'gpt-4o-mini', 'text-embedding-3-small'],
    },
    {
      flavor: 'azure',
      name: 'demo-azure',
      port: Number(env.DEMO_AZURE_PORT || 18082),
      apiKey: 'demo-azure-key',
      apiVersion: '2024-10-21',
      deployments: ['gpt4o-prod', 'embed-prod'],
    },
    {
      flavor: 'compatible',
      name: 'demo-compatible',
      port: Number(env.DEMO_COMPAT_PORT || 18083),
      models: ['llama-3.1-8b'],
    },
  ];
}

async function main() {
  const specs = demoSpecs();
  const sims = [];
  try {
    for (const spec of specs) {
      const sim = await startSim(spec);
      sims.push(sim);
      let reported = 0;
      sim.on('response', () => {
        while (reported < sim.violations.length) console.error(`violation: ${sim.violations[reported++]}`);
      });
      sim.on('request', (rec) => {
        if (process.env.DEMO_VERBOSE) console.error(`${sim.name}: ${rec.method} ${rec.url}`);
      });
      console.log(`${spec.name.padEnd(16)} ${spec.flavor.padEnd(10)} ${sim.url}`);
    }
  } catch (err) {
    console.error(`demo simulators: cannot start: ${err.message}`);
    await Promise.all(sims.map((s) => s.close()));
    process.exit(1);
  }
  console.log('simulators ready (Ctrl-C to stop)');

  let stopping = false;
  async function stop(sig) {
    if (stopping) return;
    stopping = true;
    console.error(`demo simulators: ${sig}, stopping`);
    await Promise.race([Promise.all(sims.map((s) => s.close())), new Promise((r) => setTimeout(r, 2000))]);
    process.exit(0);
  }
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
