// The page: a configuration pasted or loaded is checked, described and run through a
// simulated day, all by the governance-tools package (the filter's own code in
// WebAssembly). This file only draws what the package answers; it decides nothing.
import { check, describe, simulate } from './governance-tools/index.js';

const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  node.append(...children);
  return node;
};
const svg = (tag, attrs = {}, ...children) => {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  node.append(...children);
  return node;
};

const amount = (entry, value) =>
  entry.kind === 'budget' ? `$${Number(value).toFixed(4).replace(/\.?0+$/, '')}` : String(value);

// ---- problems ----------------------------------------------------------------------------

function showProblems(result) {
  const verdict = $('verdict');
  verdict.className = result.valid ? 'valid' : 'invalid';
  verdict.textContent = result.valid
    ? `Valid: ${result.summary.customers} customers, ${result.summary.teams} teams, ` +
      `${result.summary.virtual_keys} keys, ${result.summary.limits} limits`
    : `${result.problems.length} problem${result.problems.length === 1 ? '' : 's'}`;
  $('problems').replaceChildren(
    ...result.problems.map((problem) =>
      el('li', { class: 'problem' },
        ...(problem.path ? [el('code', {}, problem.path), ' '] : []), problem.message)),
  );
}

// ---- hierarchy ---------------------------------------------------------------------------

function limitLine(entry) {
  const when = entry.calendar_aligned ? 'calendar' : entry.in_use ? 'rolling' : 'rolling, from first use';
  return el('div', { class: 'limit' },
    `${entry.kind} ${amount(entry, entry.limit)} per ${entry.reset_duration} (${when}) `,
    el('span', { class: 'window' },
      `window ${entry.window_start_local} → ${entry.window_end_local} ${entry.timezone}`));
}

function ownerNode(node) {
  const label = node.owner.replace('_', ' ');
  const flags = node.active === false ? ' (blocked)' : '';
  return el('div', { class: 'owner', 'data-owner': node.owner, 'data-id': node.id },
    el('div', { class: 'name' }, el('span', { class: 'kind' }, label), node.id + flags),
    ...node.limits.map(limitLine),
    ...node.children.map(ownerNode));
}

function showHierarchy(described) {
  $('at').textContent = `windows at ${described.at}`;
  $('hierarchy').replaceChildren(...described.hierarchy.map(ownerNode));
}

// ---- a simulated day ---------------------------------------------------------------------

// Share of a day's requests in each UTC hour: quiet nights, busy working hours.
const HOURLY = [1, 1, 1, 1, 1, 2, 4, 7, 10, 10, 10, 9, 8, 9, 10, 10, 9, 7, 5, 4, 3, 2, 1, 1];

// The moment (ms into the day) of request n of count, spread along HOURLY.
function momentOf(n, count) {
  const total = HOURLY.reduce((a, b) => a + b, 0);
  let target = ((n + 0.5) / count) * total;
  for (let hour = 0; hour < 24; hour += 1) {
    if (target < HOURLY[hour]) return (hour + target / HOURLY[hour]) * 3600e3;
    target -= HOURLY[hour];
  }
  return 24 * 3600e3 - 1;
}

// A model the key may use that has a price (a prefix pattern stands for a name it matches).
function modelFor(allowed, priced) {
  const name = (entry) => entry.replace(/\*$/, '');
  const candidates = allowed ?? priced;
  const exact = candidates.find((entry) => !entry.endsWith('*') && priced.some((p) =>
    p === entry || (p.endsWith('*') && entry.startsWith(name(p)))));
  return exact ?? (candidates.length ? name(candidates[0]) : 'gpt-4o-mini');
}

function dayOfTraffic(config, dayStart, perKey, prompt, output) {
  const priced = Object.keys(config.pricing ?? {});
  const lines = [];
  (config.virtual_keys ?? []).forEach((key, k) => {
    if (typeof key.value !== 'string') return; // only the hash is known: it cannot be sent
    const providerConfig = key.provider_configs?.[0];
    const model = modelFor(providerConfig?.allowed_models ?? key.allowed_models, priced);
    for (let n = 0; n < perKey; n += 1) {
      const vary = 0.5 + ((n * 37 + k * 11) % 100) / 100; // 0.5x to 1.5x, the same every time
      lines.push({
        time: new Date(dayStart + momentOf(n, perKey) + k * 1000).toISOString(),
        key: key.value,
        model,
        ...(providerConfig ? { provider: providerConfig.provider } : {}),
        usage: { prompt_tokens: Math.round(prompt * vary), completion_tokens: Math.round(output * vary) },
      });
    }
  });
  lines.sort((a, b) => a.time.localeCompare(b.time));
  return lines;
}

function chart(limit, dayStart) {
  const width = 360;
  const height = 150;
  const pad = { left: 44, right: 8, top: 8, bottom: 20 };
  const day = 24 * 3600e3;
  const values = limit.points.map(([, used]) => used);
  const top = Math.max(limit.limit, ...values) * 1.1 || 1;
  const x = (time) => pad.left + ((Date.parse(time) - dayStart) / day) * (width - pad.left - pad.right);
  const y = (value) => height - pad.bottom - (value / top) * (height - pad.top - pad.bottom);
  let path = '';
  let previous = 0;
  for (const [time, used] of limit.points) {
    path += `${path ? ' L' : 'M'}${x(time)},${y(path ? previous : 0)} L${x(time)},${y(used)}`;
    previous = used;
  }
  if (path) path += ` L${width - pad.right},${y(previous)}`;
  const ranOut = limit.ran_out.length > 0;
  const caption = `${limit.owner.replace('_', ' ')} ${limit.id}: ${amount(limit, limit.limit)} per ` +
    `${limit.reset_duration}` + (ranOut ? `, ran out at ${limit.ran_out[0].at.slice(11, 16)} UTC` : '');
  return el('figure', { class: 'chart', 'data-owner': limit.owner, 'data-id': limit.id },
    el('figcaption', ranOut ? { class: 'ran-out' } : {}, caption),
    svg('svg', { width, height, viewBox: `0 0 ${width} ${height}`, role: 'img' },
      svg('line', { class: 'axis', x1: pad.left, x2: width - pad.right, y1: y(0), y2: y(0) }),
      svg('line', { class: 'axis', x1: pad.left, x2: pad.left, y1: pad.top, y2: y(0) }),
      svg('line', { class: 'budget', x1: pad.left, x2: width - pad.right, y1: y(limit.limit), y2: y(limit.limit) }),
      svg('text', { x: 2, y: y(limit.limit) + 3 }, amount(limit, limit.limit)),
      ...[0, 6, 12, 18, 24].map((h) =>
        svg('text', { x: pad.left + (h / 24) * (width - pad.left - pad.right), y: height - 5,
          'text-anchor': h === 24 ? 'end' : 'middle' }, `${h}h`)),
      svg('path', { class: 'spend', d: path || `M${pad.left},${y(0)}` }),
      ...limit.ran_out.map((out) => svg('circle', { class: 'out', r: 4, cx: x(out.at), cy: y(limit.limit) }))));
}

function showSimulation(result, dayStart) {
  const refusals = Object.entries(result.refusals).map(([type, n]) => `${n} ${type}`).join(', ');
  const rows = result.spend.map((s) =>
    el('tr', {}, el('td', {}, s.owner.replace('_', ' ')), el('td', {}, s.id),
      el('td', {}, `$${s.usd.toFixed(4)}`), el('td', {}, String(s.requests))));
  $('summary').replaceChildren(el('div', { class: 'summary' },
    `${result.requests} requests: ${result.admitted} admitted, ${result.refused} refused` +
      (refusals ? ` (${refusals})` : ''),
    el('table', {}, el('tr', {}, ...['owner', 'id', 'spent', 'requests'].map((h) => el('th', {}, h))), ...rows)));
  const budgets = result.limits.filter((limit) => limit.kind === 'budget');
  $('charts').replaceChildren(...budgets.map((limit) => chart(limit, dayStart)));
}

// ---- wiring ------------------------------------------------------------------------------

function clear() {
  for (const id of ['hierarchy', 'summary', 'charts']) $(id).replaceChildren();
  $('at').textContent = '';
  $('trace').value = '';
}

function run() {
  const text = $('config').value;
  clear();
  if (!text.trim()) {
    $('verdict').textContent = '';
    $('problems').replaceChildren();
    $('status').textContent = 'Paste or load a configuration.';
    return;
  }
  const checked = check(text);
  showProblems(checked);
  if (!checked.valid) {
    $('status').textContent = 'Checked: the filter would refuse this configuration.';
    return;
  }
  const dayStart = Date.parse(`${$('day').value}T00:00:00Z`);
  // The windows of now when the day is today, else of that day's noon (UTC).
  const now = Date.now();
  const today = now >= dayStart && now < dayStart + 24 * 3600e3;
  showHierarchy(describe(text, new Date(today ? now : dayStart + 12 * 3600e3)));
  const trace = dayOfTraffic(JSON.parse(text), dayStart, Number($('per-key').value) || 1,
    Number($('prompt').value) || 0, Number($('output').value) || 0);
  $('trace').value = trace.map((line) => JSON.stringify(line)).join('\n');
  showSimulation(simulate(text, trace), dayStart);
  $('status').textContent = `Checked and simulated ${trace.length} requests.`;
}

let pending;
const later = () => {
  clearTimeout(pending);
  pending = setTimeout(run, 250);
};

$('day').value = new Date().toISOString().slice(0, 10);
for (const id of ['config', 'day', 'per-key', 'prompt', 'output']) $(id).addEventListener('input', later);
$('file').addEventListener('change', async () => {
  const file = $('file').files[0];
  if (file) {
    $('config').value = await file.text();
    run();
  }
});
document.body.dataset.ready = 'true';
$('status').textContent = 'Ready: paste or load a configuration.';
