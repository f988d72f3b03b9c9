// The package's entry point. It loads the WebAssembly module once, from the file beside
// this one (read from disk in Node, fetched in a browser), and exposes the verbs with their
// JSON results parsed: a result is returned, a failure is thrown as a GovernanceError.
import init, * as bindings from './governance.js';

const wasmUrl = new URL('./governance_bg.wasm', import.meta.url);
const inNode = typeof process === 'object' && Boolean(process.versions?.node);
if (inNode) {
  const { readFile } = await import('node:fs/promises');
  await init({ module_or_path: await readFile(wasmUrl) });
} else {
  await init({ module_or_path: wasmUrl });
}

/** A verb could not answer: `message` says why; `problems` lists a configuration's problems. */
export class GovernanceError extends Error {
  constructor(answer) {
    super(answer.error);
    this.name = 'GovernanceError';
    this.problems = answer.problems ?? [];
  }
}

function unwrap(text) {
  const answer = JSON.parse(text);
  if ('result' in answer) return answer.result;
  throw new GovernanceError(answer);
}

// Configurations and requests may be given as JSON text or as objects.
const json = (value) => (typeof value === 'string' ? value : JSON.stringify(value));
// A trace may be JSONL text or an array of request objects.
const jsonl = (trace) =>
  Array.isArray(trace) ? trace.map((line) => JSON.stringify(line)).join('\n') : (trace ?? '');
const time = (at) => (at instanceof Date ? at.toISOString() : String(at));

export function check(config) {
  return unwrap(bindings.check(json(config)));
}

export function describe(config, at = new Date()) {
  return unwrap(bindings.describe(json(config), time(at)));
}

export function explain(config, request, trace = '') {
  return unwrap(bindings.explain(json(config), json(request), jsonl(trace)));
}

export function simulate(config, trace) {
  return unwrap(bindings.simulate(json(config), jsonl(trace)));
}

export function limitador(config) {
  return unwrap(bindings.limitador(json(config)));
}
