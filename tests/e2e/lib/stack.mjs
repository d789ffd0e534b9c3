// A gateway in front of a set of simulators, for one test file.
//
//   const st = await startStack({
//     sims: { oa: { flavor: 'openai', models: ['gpt-4o-2024-08-06'] } },
//     models: [{ name: 'gpt-4o', deployments: [{ provider: 'oa', model: 'gpt-4o-2024-08-06', priority: 1 }] }],
//     routing: { max_attempts: 1 },
//   });
//   st.client (the openai SDK, pointed at the gateway), st.sims.oa, st.gw, st.violations(), st.close()
//
// Each simulator becomes a provider of the same name; its key is passed through an environment
// variable (`api_key: ${CMX_E2E_<NAME>_KEY}`), so keys never appear in the config file.

import OpenAI from 'openai';
import { startSim, CLIENT_KEY } from '../../sim/openai-sim.mjs';
import { startGateway, freePort } from './gateway.mjs';

export { CLIENT_KEY };

/** Provider keys: distinctive, so a leak into logs or responses is easy to find. */
export const KEYS = {
  openai: 'sk-proj-SIMSECRET-openai-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c',
  azure: 'a1z2SIMSECRETazure9f8e7d6c5b4a3f2e1d0c',
  compatible: 'sk-SIMSECRET-compat-77aa66bb55cc44dd',
};

const TYPE = { openai: 'openai', azure: 'azure_openai', compatible: 'openai_compatible' };
const CLOUD = { openai: 'openai', azure: 'azure', compatible: 'onprem' };

export const envVarFor = (name) => `CMX_E2E_${name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}_KEY`;

/** The config entry for a simulator as a provider. */
export function providerFor(sim, overrides = {}) {
  const p = {
    name: sim.name,
    type: TYPE[sim.flavor],
    cloud: CLOUD[sim.flavor],
  };
  if (sim.flavor === 'azure') p.region = 'eastus';
  p.base_url = sim.url;
  if (sim.apiKey !== undefined) p.api_key = `\${${envVarFor(sim.name)}}`;
  if (sim.flavor === 'azure' && sim.apiVersion !== undefined && !sim.v1) p.api_version = sim.apiVersion;
  return { ...p, ...overrides };
}

/** A provider whose base_url points at a port nobody listens on. */
export async function deadProvider(name = 'dead', type = 'openai') {
  const port = await freePort();
  return { name, type, cloud: 'openai', base_url: `http://127.0.0.1:${port}/v1`, api_key: 'sk-dead-provider-key' };
}

/** An SDK client pointed at a gateway. */
export function sdk(gw, opts = {}) {
  return new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: CLIENT_KEY, maxRetries: 0, timeout: 15_000, ...opts });
}

/**
 * sims: { name: simOpts } — flavor, plus for azure `apiVersion` (classic surface) or `v1: true`
 *   (the /openai/v1 surface: no api_version in the provider); the key defaults to KEYS[flavor]
 *   (compatible sims are keyless unless `apiKey` is given; `apiKey: null` forces keyless).
 * models, routing, server: config sections. extraProviders: more provider entries.
 */
export async function startStack({ sims = {}, models = [], routing, server, extraProviders = [], env = {}, workers = 2, args = [], configPatch } = {}) {
  const started = {};
  const gwEnv = { ...env };
  try {
    for (const [name, o] of Object.entries(sims)) {
      const flavor = o.flavor;
      let apiKey = o.apiKey === undefined ? (flavor === 'compatible' ? undefined : KEYS[flavor]) : o.apiKey ?? undefined;
      const sim = await startSim({ name, ...o, apiKey });
      sim.v1 = !!o.v1;
      if (sim.apiKey !== undefined) gwEnv[envVarFor(name)] = sim.apiKey;
      started[name] = sim;
    }
    const config = {
      providers: [...Object.values(started).map((s) => providerFor(s, sims[s.name].provider)), ...extraProviders],
      models,
    };
    if (routing) config.routing = routing;
    if (server) config.server = server;
    if (configPatch) configPatch(config);
    const gw = await startGateway({ config, env: gwEnv, workers, args });
    const pastViolations = [];
    const st = {
      gw,
      sims: started,
      config,
      env: gwEnv,
      client: sdk(gw),
      url: gw.url,
      sdk: (o) => sdk(gw, o),
      /** simulator violations since the last reset() */
      violations: () => Object.values(started).flatMap((s) => s.violations),
      /** every simulator violation since the stack started (reset() keeps these) */
      allViolations: () => [...pastViolations, ...Object.values(started).flatMap((s) => s.violations)],
      /** forgets recorded requests and scripted behaviours (violations move to allViolations()) */
      reset: () => {
        for (const s of Object.values(started)) {
          pastViolations.push(...s.violations);
          s.reset();
        }
      },
      /** Stops everything; throws when the gateway printed a sanitizer/allocator report. */
      close: async () => {
        await gw.kill();
        await Promise.all(Object.values(started).map((s) => s.close()));
        const report = gw.sanitizerReport();
        if (report) throw new Error(`cloudmux reported a memory/UB error during the run or at shutdown (SIGTERM in after(); exit code ${gw.exitCode}, signal ${gw.exitSignal}):\n${report}`);
      },
    };
    return st;
  } catch (err) {
    await Promise.all(Object.values(started).map((s) => s.close()));
    throw err;
  }
}

/** POSTs JSON (an object, or raw text sent as is) to the gateway with fetch. */
export function postJSON(base, path, body, headers = {}, init = {}) {
  return fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${CLIENT_KEY}`, ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(15_000),
    ...init,
  });
}

/**
 * Splits the top level of a JSON object text into [key, raw value text] pairs without parsing
 * numbers (so 9007199254740993 and 1e400 are compared byte for byte).
 */
export function rawFields(text) {
  const out = new Map();
  let i = 0;
  const ws = () => {
    while (i < text.length && /\s/.test(text[i])) i++;
  };
  const str = () => {
    const start = i;
    i++; // opening quote
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
    return text.slice(start, i);
  };
  const value = () => {
    ws();
    const start = i;
    if (text[i] === '"') {
      str();
    } else if (text[i] === '{' || text[i] === '[') {
      let depth = 0;
      while (i < text.length) {
        const c = text[i];
        if (c === '"') {
          str();
          continue;
        }
        if (c === '{' || c === '[') depth++;
        else if (c === '}' || c === ']') {
          depth--;
          if (depth === 0) {
            i++;
            break;
          }
        }
        i++;
      }
    } else {
      while (i < text.length && !/[,}\s]/.test(text[i])) i++;
    }
    return text.slice(start, i);
  };
  ws();
  if (text[i] !== '{') throw new Error('not a JSON object');
  i++;
  for (;;) {
    ws();
    if (text[i] === '}') break;
    const key = JSON.parse(str());
    ws();
    if (text[i] !== ':') throw new Error(`bad JSON object text near ${i}`);
    i++;
    out.set(key, value().trim());
    ws();
    if (text[i] === ',') i++;
    else if (text[i] === '}') break;
    else throw new Error(`bad JSON object text near ${i}`);
  }
  return out;
}

/** Joins the content deltas of SDK stream chunks. */
export function joinDeltas(chunks) {
  return chunks.map((c) => c.choices?.[0]?.delta?.content ?? '').join('');
}

/** Reassembles streamed tool-call deltas from SDK chunks: [{id, type, name, arguments}]. */
export function reassembleToolCalls(chunks) {
  const calls = [];
  for (const c of chunks) {
    for (const tc of c.choices?.[0]?.delta?.tool_calls || []) {
      const cur = (calls[tc.index] ||= { id: '', type: '', name: '', arguments: '' });
      if (tc.id) cur.id = tc.id;
      if (tc.type) cur.type = tc.type;
      if (tc.function?.name) cur.name += tc.function.name;
      if (tc.function?.arguments) cur.arguments += tc.function.arguments;
    }
  }
  return calls;
}

export const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false },
    strict: true,
  },
};
