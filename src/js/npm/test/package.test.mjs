// The JavaScript package against the same configurations, requests and traces as
// governance-cli: the same verdicts (those recorded from the filter in
// host-tests/fixtures/verdicts.json) and the same JSON, verb by verb.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const repo = fileURLToPath(new URL('../../../../', import.meta.url));
const packageDir = process.env.GOVERNANCE_TOOLS_PACKAGE ?? join(repo, 'target/js/governance-tools');
const cli = process.env.GOVERNANCE_CLI ?? join(repo, 'target/debug/governance-cli');
const tools = await import(pathToFileURL(join(packageDir, 'index.js')).href);
const verdicts = JSON.parse(readFileSync(join(repo, 'host-tests/fixtures/verdicts.json'), 'utf8'));

const scratch = mkdtempSync(join(tmpdir(), 'governance-tools-'));
let files = 0;
function file(text) {
  files += 1;
  const path = join(scratch, `input-${files}`);
  writeFileSync(path, text);
  return path;
}

/** governance-cli's exit status and parsed standard output. */
function cliJson(...args) {
  const run = spawnSync(cli, args, { encoding: 'utf8' });
  assert.equal(run.error, undefined, `cannot run ${cli}: build it with make tools`);
  return { status: run.status, json: JSON.parse(run.stdout) };
}

const line = (problem) => (problem.path ? `${problem.path}: ${problem.message}` : problem.message);

// A key with a 1-cent daily budget under a team and a customer billed by the calendar month
// in New York; each request below costs 0.3 cents.
const CONFIG = JSON.stringify({
  pricing: { 'gpt-4o-mini': { input_cost_per_token: 1e-6, output_cost_per_token: 2e-6 } },
  customers: [{ id: 'acme', calendar_aligned: true, timezone: 'America/New_York',
    budgets: [{ max_limit: 2000, reset_duration: '1M' }] }],
  teams: [{ id: 'ml', customer_id: 'acme', rate_limit: { request_max_limit: 100, request_reset_duration: '1h' } }],
  virtual_keys: [{ id: 'vk-1', value: 'sk-one', team_id: 'ml',
    budgets: [{ max_limit: 0.01, reset_duration: '1d' }],
    provider_configs: [{ provider: 'openai', allowed_models: ['gpt-4o-mini'] }] }],
});
const request = (hour, extra = {}) => ({
  time: `2026-03-02T${String(hour).padStart(2, '0')}:00:00Z`,
  key: 'sk-one', model: 'gpt-4o-mini', provider: 'openai',
  usage: { prompt_tokens: 1000, completion_tokens: 1000 }, ...extra,
});
const TRACE = [9, 10, 11, 12, 13].map((hour) => request(hour));
const jsonl = (lines) => lines.map((l) => JSON.stringify(l)).join('\n');

test('check gives every recorded configuration the filter verdict, as governance-cli does', () => {
  assert.ok(verdicts.cases.length >= 10);
  for (const recorded of verdicts.cases) {
    const checked = tools.check(recorded.config);
    assert.equal(checked.valid, recorded.valid, recorded.name);
    assert.deepEqual(checked.problems.map(line), recorded.problems, recorded.name);
    const byCli = cliJson('check', file(recorded.config));
    assert.equal(byCli.status, recorded.valid ? 0 : 1, recorded.name);
    assert.deepEqual(byCli.json, checked, recorded.name);
  }
});

test('simulate: admissions, refusals, spend per owner and when the budget ran out', () => {
  const result = tools.simulate(CONFIG, TRACE);
  assert.equal(result.requests, 5);
  assert.equal(result.admitted, 4, 'admitted while the 1-cent budget had room: 0, 0.3, 0.6, 0.9 cents');
  assert.deepEqual(result.refusals, { budget_exceeded: 1 });
  assert.deepEqual(result.results.map((r) => r.status), [200, 200, 200, 200, 402]);
  const spent = Object.fromEntries(result.spend.map((s) => [`${s.owner}:${s.id}`, [s.usd, s.requests]]));
  assert.deepEqual(spent, {
    'provider_config:vk-1/openai': [0.012, 4],
    'virtual_key:vk-1': [0.012, 4],
    'team:ml': [0.012, 4],
    'customer:acme': [0.012, 4],
  });
  const budget = result.limits.find((l) => l.owner === 'virtual_key' && l.kind === 'budget');
  assert.deepEqual(budget.ran_out.map((r) => r.at), ['2026-03-02T12:00:00Z']);
  assert.equal(budget.window_start, '2026-03-02T09:00:00Z', 'a rolling day from its first use');
  assert.deepEqual(budget.points.map(([, used]) => used), [0.003, 0.006, 0.009, 0.012]);
  const byCli = cliJson('simulate', file(CONFIG), file(jsonl(TRACE)));
  assert.equal(byCli.status, 0);
  assert.deepEqual(byCli.json, result);
});

test('explain: the key, its owners, the limits with their windows, and the decision', () => {
  const refused = tools.explain(CONFIG, request(14), TRACE);
  assert.equal(refused.virtual_key.id, 'vk-1');
  assert.equal(refused.virtual_key.header, 'authorization');
  assert.deepEqual([refused.team, refused.customer, refused.provider_config], ['ml', 'acme', 'vk-1/openai']);
  assert.deepEqual(refused.limits.map((l) => `${l.owner}:${l.kind}`),
    ['virtual_key:budget', 'team:requests', 'customer:budget']);
  const monthly = refused.limits[2];
  assert.deepEqual([monthly.window_start, monthly.window_end], ['2026-03-01T05:00:00Z', '2026-04-01T04:00:00Z']);
  assert.deepEqual([monthly.window_start_local, monthly.window_end_local, monthly.timezone],
    ['2026-03-01T00:00:00', '2026-04-01T00:00:00', 'America/New_York']);
  assert.equal(refused.decision.admitted, false);
  assert.equal(refused.decision.status, 402);
  assert.equal(refused.decision.type, 'budget_exceeded');
  assert.match(refused.decision.message, /virtual key 'vk-1' budget exceeded: 0\.0120 of 0\.0100 USD/);
  assert.equal(refused.decision.headers['retry-after'], String(19 * 3600));
  const byCli = cliJson('explain', file(CONFIG), file(JSON.stringify(request(14))), '--trace', file(jsonl(TRACE)));
  assert.deepEqual(byCli.json, refused);

  const admitted = tools.explain(CONFIG, request(9));
  assert.equal(admitted.decision.admitted, true);
  assert.equal(admitted.decision.response_headers['x-budget-limit-usd'], '0.01');
  assert.deepEqual(admitted.decision.removed_request_headers, ['authorization']);
  const blocked = tools.explain(CONFIG, request(9, { model: 'gpt-4o', provider: 'openai' }));
  assert.equal(blocked.decision.type, 'model_blocked');
  const unknown = tools.explain(CONFIG, { time: '2026-03-02T09:00:00Z', key: 'sk-nobody' });
  assert.equal(unknown.virtual_key, null);
  assert.equal(unknown.decision.type, 'virtual_key_not_found');
});

test('describe: the hierarchy and the window each limit is in', () => {
  const described = tools.describe(CONFIG, '2026-03-15T12:00:00Z');
  const [acme] = described.hierarchy;
  assert.deepEqual([acme.owner, acme.id], ['customer', 'acme']);
  const [ml] = acme.children;
  const [key] = ml.children;
  assert.deepEqual([ml.id, key.id, key.children[0].id], ['ml', 'vk-1', 'vk-1/openai']);
  assert.equal(acme.limits[0].window_start_local, '2026-03-01T00:00:00');
  assert.equal(key.limits[0].in_use, false);
  assert.equal(key.limits[0].window_start, '2026-03-15T12:00:00Z', 'a rolling window opens at first use');
  const byCli = cliJson('describe', file(CONFIG), '--at', '2026-03-15T12:00:00Z');
  assert.deepEqual(byCli.json, described);
});

test('limitador writes the same limits file as governance-cli', () => {
  const yaml = tools.limitador(CONFIG);
  assert.match(yaml, /namespace: governance:vk:vk-1/);
  const run = spawnSync(cli, ['limitador', file(CONFIG)], { encoding: 'utf8' });
  assert.equal(run.stdout, yaml);
});

test('a failure is thrown with every problem of the configuration', () => {
  const broken = '{"mode":"loud","virtual_keys":[{"id":"k"}]}';
  assert.throws(() => tools.simulate(broken, TRACE), (err) => {
    assert.equal(err.name, 'GovernanceError');
    assert.deepEqual(err.problems.map((p) => p.path), ['mode', 'virtual_keys[0]']);
    assert.match(err.message, /^invalid configuration: mode: unknown variant `loud`/);
    return true;
  });
  assert.throws(() => tools.simulate(CONFIG, `${JSON.stringify(request(9))}\n{"time":"yesterday"}`),
    /trace line 2: time: "yesterday" is not an RFC 3339 time/);
  const byCli = cliJson('simulate', file(broken), file(jsonl(TRACE)));
  assert.equal(byCli.status, 1);
  assert.deepEqual(byCli.json.problems.map((p) => p.path), ['mode', 'virtual_keys[0]']);
});
