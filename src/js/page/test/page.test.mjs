// The web page in Debian's headless chromium, served by a static file server this test
// starts on loopback: a configuration with errors shows them with their paths, a valid one
// its hierarchy, each limit's window and a simulated day drawn against each budget. The
// numbers shown are the package's own (checked against it here). A screenshot is kept in
// target/artifacts/page.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { mkdirSync, mkdtempSync, readFile, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const repo = fileURLToPath(new URL('../../../../', import.meta.url));
const site = join(repo, 'target/web');
const artifacts = join(repo, 'target/artifacts');
const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const { chromium } = createRequire(join(repo, 'target/js/page-test/package.json'))('playwright-core');
const tools = await import(pathToFileURL(join(site, 'governance-tools/index.js')).href);

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.ts': 'text/plain; charset=utf-8',
  '.md': 'text/plain; charset=utf-8',
};

let server;
let browser;
let profile;
let origin;

before(async () => {
  server = createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname));
    const file = join(site, path.endsWith('/') ? `${path}index.html` : path);
    if (!file.startsWith(site)) {
      res.writeHead(403).end();
      return;
    }
    readFile(file, (err, data) => {
      if (err) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
      res.end(data);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${server.address().port}`;
  profile = mkdtempSync(join(tmpdir(), 'governance-page-'));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    chromiumSandbox: false,
    args: ['--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 900 },
  });
});

after(async () => {
  await browser?.close();
  await new Promise((resolve) => (server ? server.close(resolve) : resolve()));
  if (profile) rmSync(profile, { recursive: true, force: true });
});

const INVALID = JSON.stringify({
  mode: 'loud',
  virtual_keys: [{ id: 'k', value: 's', budgets: [{ max_limit: 5, reset_duration: '5x' }] }],
}, null, 2);

const VALID = JSON.stringify({
  pricing: { 'gpt-4o-mini': { input_cost_per_token: 1.5e-7, output_cost_per_token: 6e-7 } },
  customers: [{ id: 'acme', calendar_aligned: true, timezone: 'America/New_York',
    budgets: [{ max_limit: 2000, reset_duration: '1M' }] }],
  teams: [{ id: 'ml', customer_id: 'acme', budgets: [{ max_limit: 0.25, reset_duration: '1d', calendar_aligned: true }] }],
  virtual_keys: [
    { id: 'vk-ml-1', value: 'sk-ml-1', team_id: 'ml', budgets: [{ max_limit: 0.1, reset_duration: '1d' }] },
    { id: 'vk-ml-2', value: 'sk-ml-2', team_id: 'ml' },
    { id: 'vk-ci', value_sha256: 'ab'.repeat(32), customer_id: 'acme' },
  ],
}, null, 2);

test('the page shows errors with their paths, then the hierarchy, windows and a simulated day', async () => {
  const page = await browser.newPage();
  const failures = [];
  page.on('pageerror', (err) => failures.push(String(err)));
  await page.goto(`${origin}/`);
  await page.waitForSelector('body[data-ready="true"]');
  await page.fill('#day', '2026-03-02');

  await page.fill('#config', INVALID);
  await page.waitForSelector('#verdict.invalid');
  const problems = await page.locator('#problems li').allTextContents();
  assert.deepEqual(problems, [
    'mode unknown variant `loud`, expected `enforce` or `shadow`',
    'virtual_keys[0].budgets[0].reset_duration "5x" is not a duration',
  ]);
  assert.equal(await page.locator('#verdict').textContent(), '2 problems');
  assert.equal(await page.locator('#hierarchy .owner').count(), 0);

  await page.fill('#config', VALID);
  await page.waitForSelector('#verdict.valid');
  await page.waitForSelector('#charts figure');
  assert.equal(await page.locator('#problems li').count(), 0);
  assert.match(await page.locator('#verdict').textContent(), /^Valid: 1 customers, 1 teams, 3 keys, 3 limits/);
  // The hierarchy: customer > team > keys, and the key that names its customer itself.
  const path = (...ids) => ids.map((id) => `.owner[data-id="${id}"]`).join(' > ');
  for (const nested of [path('acme', 'ml', 'vk-ml-1'), path('acme', 'ml', 'vk-ml-2'), path('acme', 'vk-ci')]) {
    assert.equal(await page.locator(`#hierarchy > ${nested}`).count(), 1, nested);
  }
  const acme = await page.locator(`#hierarchy ${path('acme')} > .limit`).textContent();
  assert.equal(acme, 'budget $2000 per 1M (calendar) window 2026-03-01T00:00:00 → 2026-04-01T00:00:00 America/New_York');

  // The simulated day: what the page shows is what the package answers for the same trace.
  const trace = await page.locator('#trace').inputValue();
  const expected = tools.simulate(VALID, trace);
  assert.equal(expected.requests, 400, 'two keys with a secret, 200 requests each');
  const summary = await page.locator('#summary .summary').textContent();
  const refusals = Object.entries(expected.refusals).map(([type, n]) => `${n} ${type}`).join(', ');
  assert.ok(summary.startsWith(`400 requests: ${expected.admitted} admitted, ${expected.refused} refused (${refusals})`), summary);
  assert.ok(expected.refused > 0, 'the day runs through budgets');
  const budgets = expected.limits.filter((l) => l.kind === 'budget');
  const charts = page.locator('#charts figure');
  assert.equal(await charts.count(), budgets.length);
  for (const limit of budgets) {
    const figure = page.locator(`#charts figure[data-owner="${limit.owner}"][data-id="${limit.id}"]`);
    assert.equal(await figure.count(), 1, limit.id);
    const caption = await figure.locator('figcaption').textContent();
    if (limit.ran_out.length) {
      assert.match(caption, new RegExp(`ran out at ${limit.ran_out[0].at.slice(11, 16)} UTC$`));
    } else {
      assert.doesNotMatch(caption, /ran out/);
    }
    assert.equal(await figure.locator('circle.out').count(), limit.ran_out.length);
    assert.equal(await figure.locator('line.budget').count(), 1);
  }
  const keyBudget = budgets.find((l) => l.id === 'vk-ml-1');
  assert.equal(keyBudget.ran_out.length, 1, 'the key\'s 10-cent day runs out');

  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: join(artifacts, 'page.png'), fullPage: true });
  assert.deepEqual(failures, []);
});
