// Jetflow dashboard: plain ES module, no build step, no dependencies. It calls the public API with
// the key the user enters (kept in localStorage); server-sent events authenticate with ?access_token=.

const KEY = 'jetflow.apiKey';
const main = document.getElementById('main');
let apiKey = localStorage.getItem(KEY) || '';
let cleanup = () => {};

// ------------------------------------------------------------------ small helpers

/** Builds an element: h('td', { class: 'num', title }, 'text', child…). Text is never parsed as HTML. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

const chip = (status, cls = status) => h('span', { class: `chip ${cls}` }, String(status).replace('_', ' '));
const mono = (text, title) => h('span', { class: 'mono', title }, text);

function ago(t) {
  if (t === null || t === undefined) return '—';
  const ms = Date.now() - new Date(t).getTime();
  if (ms < 1_500) return 'just now';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s ago`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m}m ago`;
  const hh = Math.round(m / 60);
  if (hh < 48) return `${hh}h ago`;
  return `${Math.round(hh / 24)}d ago`;
}
const when = (t) => h('span', { class: 'when', title: t ? new Date(t).toLocaleString() : '', dataset: { t: t ? String(new Date(t).getTime()) : '' } }, ago(t));

function dur(ms) {
  if (ms === null || ms === undefined) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  const m = Math.floor(ms / 60_000);
  return `${m}m ${String(Math.round((ms % 60_000) / 1000)).padStart(2, '0')}s`;
}
const num = (n) => (n === null || n === undefined ? '—' : Number(n).toLocaleString('en'));
function bytes(n) {
  if (n < 1024) return `${n} B`;
  const u = ['KB', 'MB', 'GB', 'TB'];
  let i = -1;
  do {
    n /= 1024;
    i++;
  } while (n >= 1024 && i < u.length - 1);
  return `${n.toFixed(n < 10 ? 1 : 0)} ${u[i]}`;
}

function toast(text, bad = false) {
  const t = h('div', { class: `toast${bad ? ' bad' : ''}`, role: 'status' }, text);
  document.getElementById('toasts').append(t);
  setTimeout(() => t.remove(), 4_000);
}

function icon(paths) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('width', '14');
  svg.setAttribute('height', '14');
  for (const d of paths) {
    const p = document.createElementNS(ns, 'path');
    p.setAttribute('d', d);
    svg.append(p);
  }
  return svg;
}

function copyButton(text) {
  const copy = (e) => {
    e.preventDefault();
    e.stopPropagation();
    void navigator.clipboard?.writeText(text);
    toast(`Copied ${text}`);
  };
  return h('button', { class: 'copy', title: 'Copy', 'aria-label': 'Copy', onclick: copy }, icon(['M9 9h10v10H9z', 'M5 15V5h10']));
}

class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code;
  }
}

async function api(path, init = {}, key = apiKey) {
  const res = await fetch(path, { ...init, headers: { authorization: `Bearer ${key}`, ...(init.body ? { 'content-type': 'application/json' } : {}), ...(init.headers || {}) } });
  const body = await res.json().catch(() => null);
  if (res.status === 401 && key === apiKey) {
    logout('Your API key was refused. Enter it again.');
    throw new ApiError(401, body);
  }
  if (!res.ok) throw new ApiError(res.status, body);
  return body;
}

// Refreshes every relative time on the page.
setInterval(() => {
  for (const el of document.querySelectorAll('.when[data-t]')) if (el.dataset.t) el.textContent = ago(Number(el.dataset.t));
}, 5_000);

// ------------------------------------------------------------------ live events (one stream for all pages)

const listeners = new Set();
let source = null;
function connectEvents() {
  source?.close();
  const live = document.getElementById('live');
  source = new EventSource(`/v1/stream/events?access_token=${encodeURIComponent(apiKey)}`);
  source.addEventListener('open', () => {
    live.classList.add('on');
    live.lastChild.textContent = 'live';
  });
  source.addEventListener('error', () => {
    live.classList.remove('on');
    live.lastChild.textContent = 'reconnecting';
  });
  source.addEventListener('event', (e) => {
    const ev = JSON.parse(e.data);
    for (const fn of listeners) fn(ev);
  });
}
function onEvent(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

let dlqTimer = 0;
async function refreshDlqCount() {
  try {
    const r = await api('/v1/deadletters?limit=100');
    const c = document.getElementById('dlq-count');
    c.hidden = r.deadLetters.length === 0;
    c.textContent = r.deadLetters.length >= 100 ? '99+' : String(r.deadLetters.length);
  } catch {
    /* shown on the page itself */
  }
}

// ------------------------------------------------------------------ session

function logout(message) {
  localStorage.removeItem(KEY);
  apiKey = '';
  source?.close();
  clearInterval(dlqTimer);
  document.getElementById('logout').hidden = true;
  document.getElementById('live').classList.remove('on');
  loginPage(message);
}

function loginPage(message) {
  cleanup();
  cleanup = () => {};
  const err = h('div', { class: 'error', role: 'alert' }, message || '');
  const input = h('input', { type: 'password', id: 'api-key', placeholder: 'API key', autocomplete: 'off', spellcheck: 'false', required: true });
  const form = h(
    'form',
    {
      onsubmit: async (e) => {
        e.preventDefault();
        err.textContent = '';
        const key = input.value.trim();
        try {
          await api('/v1/flows?limit=1', {}, key);
        } catch (ex) {
          err.textContent = ex.status === 401 ? 'That key was refused: check JETFLOW_API_KEYS.' : `Cannot reach the API: ${ex.message}`;
          return;
        }
        apiKey = key;
        localStorage.setItem(KEY, key);
        start();
      },
    },
    input,
    h('button', { class: 'btn', type: 'submit' }, 'Connect'),
    err,
  );
  main.replaceChildren(h('div', { class: 'login' }, h('h1', {}, 'Connect to Jetflow'), h('p', {}, 'Enter an API key. It is kept in this browser only and identifies your tenant.'), form));
  input.focus();
}

function start() {
  document.getElementById('logout').hidden = false;
  connectEvents();
  void refreshDlqCount();
  clearInterval(dlqTimer);
  dlqTimer = setInterval(refreshDlqCount, 10_000);
  route();
}

document.getElementById('logout').addEventListener('click', () => logout());

// ------------------------------------------------------------------ router

function route() {
  if (!apiKey) return loginPage();
  cleanup();
  const [path, query] = (location.hash.slice(1) || '/flows').split('?');
  const params = new URLSearchParams(query || '');
  const parts = path.split('/').filter(Boolean);
  for (const a of document.querySelectorAll('[data-nav]')) a.classList.toggle('active', a.dataset.nav === parts[0]);
  if (parts[0] === 'flows' && parts[1]) cleanup = flowPage(decodeURIComponent(parts[1]));
  else if (parts[0] === 'deadletters') cleanup = deadLettersPage(params);
  else if (parts[0] === 'consumers') cleanup = consumersPage();
  else if (parts[0] === 'schedules') cleanup = schedulesPage();
  else cleanup = flowsPage(params);
}
window.addEventListener('hashchange', route);

function failure(where, err) {
  return h('div', { class: 'panel' }, h('div', { class: 'empty' }, h('strong', {}, `Could not load ${where}`), err.message));
}

// ------------------------------------------------------------------ flows list

const STATUSES = ['running', 'succeeded', 'partial', 'failed', 'cancelled'];
const FINAL = ['succeeded', 'partial', 'failed', 'cancelled'];
const CALLBACK_LABEL = { pending: 'pending', delivered: 'delivered', retrying: 'retrying', dead_lettered: 'dead-lettered' };

function progress(t, ended) {
  const pct = (n) => `${t.total ? (n / t.total) * 100 : 0}%`;
  const bar = h('div', { class: 'pbar' }, h('i', { class: 'ok' }), h('i', { class: 'bad' }), h('i', { class: ended ? 'off' : 'run' }));
  const [ok, bad, run] = bar.children;
  ok.style.width = pct(t.succeeded);
  bad.style.width = pct(t.failed);
  run.style.width = pct(t.running);
  // A flow that ended has no running task: one dispatched when it ended was abandoned.
  const rest = ended ? `${t.running} not finished` : `${t.running} running`;
  return h('div', { class: 'progress', title: `${t.succeeded} succeeded, ${t.failed} failed, ${rest} of ${t.total}` }, bar, h('span', { class: 'ptext' }, `${t.succeeded}/${t.total}`));
}

/** The callback's own state, beside the flow's: a flow can succeed while its callback is dead-lettered. */
function callbackChip(cb) {
  if (!cb || !cb.status) return null;
  const tip = [cb.attempts ? `${cb.attempts} attempt${cb.attempts === 1 ? '' : 's'}` : null, cb.lastStatusCode ? `last HTTP ${cb.lastStatusCode}` : null, cb.lastError || null]
    .filter(Boolean)
    .join(' · ');
  const c = h('span', { class: `chip cb ${cb.status}`, title: tip || null, dataset: { callback: cb.status } }, `callback ${CALLBACK_LABEL[cb.status] || cb.status}`);
  return c;
}

function pct(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/**
 * Throughput (finished flows per bucket, bars) and latency (p50 and p95 of submission-to-end, lines)
 * of the flows the listing returned: what the ingest already has, no metrics backend needed.
 */
function throughputChart(flows) {
  const ns = 'http://www.w3.org/2000/svg';
  const el = (tag, attrs) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    return e;
  };
  const done = flows.filter((f) => f.finishedAt && f.durationMs !== null && f.durationMs !== undefined).map((f) => ({ at: new Date(f.finishedAt).getTime(), ms: f.durationMs }));
  const head = h('div', { class: 'panel-head' }, h('h2', {}, 'Throughput and latency'));
  if (!done.length) return h('div', { class: 'panel', id: 'chart' }, head, h('div', { class: 'empty small-empty' }, 'No finished flows among the listed ones yet.'));
  const now = Date.now();
  const first = Math.min(...done.map((d) => d.at));
  // Buckets of 5 s up to 10 min, over the span of the data (at least a minute).
  const span = Math.max(60_000, now - first);
  const size = [5_000, 10_000, 30_000, 60_000, 300_000, 600_000].find((s) => span / s <= 40) || 3_600_000;
  const n = Math.min(40, Math.ceil(span / size));
  const start = now - n * size;
  const buckets = Array.from({ length: n }, () => []);
  for (const d of done) {
    const i = Math.floor((d.at - start) / size);
    if (i >= 0 && i < n) buckets[i].push(d.ms);
  }
  for (const b of buckets) b.sort((a, c) => a - c);
  const W = 720;
  const H = 140;
  const pad = 6;
  const maxCount = Math.max(1, ...buckets.map((b) => b.length));
  const maxMs = Math.max(1, ...buckets.map((b) => pct(b, 95) || 0));
  const bw = (W - 2 * pad) / n;
  const svg = el('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', class: 'chart', role: 'img', 'aria-label': 'finished flows per interval and their p50/p95 duration' });
  for (let g = 1; g <= 3; g++) svg.append(el('line', { x1: 0, x2: W, y1: (H * g) / 4, y2: (H * g) / 4, class: 'grid' }));
  buckets.forEach((b, i) => {
    if (!b.length) return;
    const bh = ((H - 2 * pad) * b.length) / maxCount;
    const r = el('rect', { x: pad + i * bw + 1, y: H - pad - bh, width: Math.max(1, bw - 2), height: bh, class: 'tput' });
    const t = document.createElementNS(ns, 'title');
    t.textContent = `${b.length} flows; p50 ${dur(pct(b, 50))}, p95 ${dur(pct(b, 95))}`;
    r.append(t);
    svg.append(r);
  });
  for (const [p, cls] of [
    [50, 'p50'],
    [95, 'p95'],
  ]) {
    // A step per bucket, so a single bucket still shows its level.
    const pts = buckets.flatMap((b, i) => {
      if (!b.length) return [];
      const y = (H - pad - ((H - 2 * pad) * pct(b, p)) / maxMs).toFixed(1);
      return [`${(pad + i * bw + 1).toFixed(1)},${y}`, `${(pad + (i + 1) * bw - 1).toFixed(1)},${y}`];
    });
    if (pts.length) svg.append(el('polyline', { points: pts.join(' '), class: `lat ${cls}` }));
  }
  const all = done.map((d) => d.ms).sort((a, c) => a - c);
  const perMin = (done.filter((d) => d.at >= start).length / ((n * size) / 60_000)).toFixed(1);
  const key = (cls, text) => h('span', {}, h('i', { class: cls }), text);
  return h(
    'div',
    { class: 'panel', id: 'chart' },
    h(
      'div',
      { class: 'panel-head' },
      h('h2', {}, 'Throughput and latency'),
      h('span', { class: 'sub' }, `${done.length} finished flows among the ${flows.length} listed · ${perMin}/min · p50 ${dur(pct(all, 50))} · p95 ${dur(pct(all, 95))}`),
    ),
    h('div', { class: 'chart-wrap' }, svg),
    h(
      'div',
      { class: 'legend' },
      key('k-tput', `finished per ${dur(size)} (max ${maxCount})`),
      key('k-p50', 'p50 duration'),
      key('k-p95', `p95 duration (max ${dur(maxMs)})`),
      h('span', { class: 'spacer' }),
      h('span', {}, `last ${dur(n * size)}`),
    ),
  );
}

/**
 * Two clicks for a bulk action: the first arms the button (it says what will happen), the second,
 * within 5 s, runs it.
 */
function armedButton(label, confirmLabel, run) {
  let armed = 0;
  const b = h(
    'button',
    {
      class: 'btn small',
      onclick: async () => {
        if (!armed) {
          b.textContent = confirmLabel();
          b.classList.add('danger');
          armed = setTimeout(() => {
            armed = 0;
            b.textContent = label();
            b.classList.remove('danger');
          }, 5_000);
          return;
        }
        clearTimeout(armed);
        armed = 0;
        b.disabled = true;
        b.textContent = 'Working…';
        try {
          await run();
        } finally {
          b.disabled = false;
          b.classList.remove('danger');
          b.textContent = label();
        }
      },
    },
    label(),
  );
  b.relabel = () => {
    if (!armed) b.textContent = label();
  };
  return b;
}

/** Runs fn over items, a few at a time; resolves with each outcome. */
async function eachLimited(items, fn, limit = 4) {
  const out = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        try {
          out[i] = { ok: true, value: await fn(items[i]) };
        } catch (err) {
          out[i] = { ok: false, err };
        }
      }
    }),
  );
  return out;
}

/**
 * "… all matching" for a bulk route by filter (POST /v1/flows:cancel, /v1/deadletters:redrive): the first
 * click is a dry run and arms the button with its count, the second (within 5 s) runs it to the end,
 * following `next`. `body()` is the request's filter part; an empty filter is sent with `all: true` (the
 * count was confirmed).
 */
function matchingButton(o) {
  let armed = 0;
  const idle = () => {
    clearTimeout(armed);
    armed = 0;
    b.textContent = o.label;
    b.classList.remove('danger');
    b.disabled = false;
  };
  const b = h(
    'button',
    {
      class: 'btn secondary small',
      id: o.id,
      onclick: async () => {
        const body = o.body();
        b.disabled = true;
        try {
          if (!armed) {
            b.textContent = 'Counting…';
            const dry = await api(o.path, { method: 'POST', body: JSON.stringify({ ...body, dryRun: true }) });
            if (!dry.matched) {
              toast(`Nothing matches: no ${o.noun}s to ${o.verb}`);
              return idle();
            }
            b.textContent = `Confirm: ${o.verb} ${dry.matched}${dry.complete ? '' : '+'} matching ${o.noun}${dry.matched === 1 ? '' : 's'}`;
            b.classList.add('danger');
            b.disabled = false;
            armed = setTimeout(idle, 5_000);
            return;
          }
          clearTimeout(armed);
          b.textContent = 'Working…';
          const sum = { done: 0, already: 0, failed: 0, first: null };
          const all = !body.filter || Object.keys(body.filter).length === 0;
          for (let cursor = null, calls = 0; calls < 100; calls++) {
            const r = await api(o.path, { method: 'POST', body: JSON.stringify({ ...body, ...(all ? { all: true } : {}), ...(cursor ? { cursor } : {}), limit: 1000 }) });
            sum.done += r[o.doneKey] || 0;
            sum.already += r[o.alreadyKey] || 0;
            sum.failed += r.failed || 0;
            sum.first ??= r.failures?.[0]?.message ?? null;
            if (!r.next) break;
            cursor = r.next;
          }
          toast(`${o.doneLabel} ${sum.done}${sum.already ? `; ${sum.already} ${o.alreadyLabel}` : ''}${sum.failed ? `; ${sum.failed} failed: ${sum.first}` : ''}`, sum.failed > 0);
          o.after();
        } catch (err) {
          toast(`${o.label} failed: ${err.message}`, true);
        }
        idle();
      },
    },
    o.label,
  );
  return b;
}

function flowsPage(params) {
  const status = params.get('status') || '';
  const key = params.get('key') || '';
  const meta = params.get('meta') || '';
  let flows = [];
  let cursor = null;
  const flashed = new Set();
  const selected = new Set();
  const tbody = h('tbody');
  const more = h('button', { class: 'btn secondary', hidden: true, onclick: () => load(true) }, 'Load older');
  const hashFor = (o) => {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries({ status, key, meta, ...o })) if (v) q.set(k, v);
    const s = q.toString();
    return s ? `#/flows?${s}` : '#/flows';
  };
  const filters = h(
    'div',
    { class: 'filters' },
    [['', 'All'], ...STATUSES.map((s) => [s, s[0].toUpperCase() + s.slice(1)])].map(([s, label]) =>
      h(
        'button',
        {
          class: `filter${s === status ? ' on' : ''}`,
          onclick: () => {
            location.hash = hashFor({ status: s });
          },
        },
        label,
      ),
    ),
  );
  const keyInput = h('input', { type: 'text', id: 'search-key', placeholder: 'idempotency key', value: key, autocomplete: 'off', spellcheck: 'false' });
  const metaInput = h('input', { type: 'text', id: 'search-meta', placeholder: 'metadata key=value', value: meta, autocomplete: 'off', spellcheck: 'false' });
  const search = h(
    'form',
    {
      class: 'search',
      id: 'flow-search',
      role: 'search',
      onsubmit: (e) => {
        e.preventDefault();
        location.hash = hashFor({ key: keyInput.value.trim(), meta: metaInput.value.trim() });
      },
    },
    keyInput,
    metaInput,
    h('button', { class: 'btn secondary small', type: 'submit' }, 'Search'),
    key || meta ? h('a', { href: hashFor({ key: '', meta: '' }), class: 'small' }, 'Clear') : null,
  );
  const running = () => flows.filter((f) => selected.has(f.flowId) && f.status === 'running');
  const cancelBtn = armedButton(
    () => `Cancel selected (${running().length})`,
    () => `Confirm: cancel ${running().length} flow${running().length === 1 ? '' : 's'}`,
    bulkCancel,
  );
  cancelBtn.id = 'bulk-cancel';
  // Every running or scheduled flow the current filter selects, not only the listed ones (POST /v1/flows:cancel).
  const matchBtn = matchingButton({
    id: 'cancel-matching',
    label: 'Cancel all matching…',
    path: '/v1/flows:cancel',
    noun: 'flow',
    verb: 'cancel',
    doneKey: 'cancelled',
    alreadyKey: 'alreadyFinished',
    doneLabel: 'Cancelling',
    alreadyLabel: 'had already ended',
    body: () => {
      const filter = {};
      if (status) filter.status = status;
      if (key) filter.idempotencyKey = key;
      if (meta) filter.metadata = meta;
      return { filter, reason: 'cancelled from the dashboard (all matching)' };
    },
    after: () => void load(),
  });
  matchBtn.hidden = FINAL.includes(status);
  const selCount = h('span', { class: 'sub', id: 'selected-count' });
  const bulk = h(
    'div',
    { class: 'bulk', hidden: true },
    selCount,
    cancelBtn,
    h(
      'button',
      {
        class: 'btn secondary small',
        onclick: () => {
          selected.clear();
          render();
        },
      },
      'Clear selection',
    ),
  );
  const all = h('input', {
    type: 'checkbox',
    'aria-label': 'Select all listed flows',
    onchange: (e) => {
      for (const f of flows) e.target.checked ? selected.add(f.flowId) : selected.delete(f.flowId);
      render();
    },
  });
  const table = h(
    'table',
    {},
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        h('th', { class: 'sel' }, all),
        h('th', {}, 'Status'),
        h('th', {}, 'Flow id'),
        h('th', { class: 'opt' }, 'Flow'),
        h('th', { class: 'num opt', title: 'Priority 1..10 (5 by default): under a backlog, higher first' }, 'Prio'),
        h('th', {}, 'Tasks'),
        h('th', { class: 'opt' }, 'Submitted'),
        h('th', { class: 'num opt' }, 'Duration'),
        h('th', { class: 'opt' }, 'Updated'),
      ),
    ),
    tbody,
  );
  const panel = h('div', { class: 'panel' }, table);
  let chart = h('div', { class: 'panel', id: 'chart' });
  main.replaceChildren(
    h('div', { class: 'page-head' }, h('h1', {}, 'Flows'), h('span', { class: 'sub' }, 'most recently changed first, live'), h('span', { class: 'spacer' }), filters),
    h('div', { class: 'page-head' }, search, h('span', { class: 'spacer' }), matchBtn, bulk),
    chart,
    panel,
    h('div', { class: 'page-head', style: null }, h('span', { class: 'spacer' }), more),
  );

  function row(f) {
    const ended = FINAL.includes(f.status);
    const box = h('input', {
      type: 'checkbox',
      'aria-label': `Select ${f.flowId}`,
      checked: selected.has(f.flowId),
      onchange: (e) => {
        if (e.target.checked) selected.add(f.flowId);
        else selected.delete(f.flowId);
        render();
      },
    });
    const tr = h(
      'tr',
      { dataset: { flowId: f.flowId }, class: flashed.has(f.flowId) ? 'flash' : null },
      h('td', { class: 'sel' }, box),
      h('td', {}, h('div', { class: 'chips wrap' }, chip(f.status), ended ? callbackChip(f.callback) : null)),
      h('td', { class: 'nowrap' }, h('a', { href: `#/flows/${f.flowId}`, class: 'mono' }, f.flowId), copyButton(f.flowId)),
      h('td', { class: 'opt' }, f.flow),
      h('td', { class: 'num opt prio' }, f.priority === undefined || f.priority === null ? h('span', { class: 'zero' }, '—') : String(f.priority)),
      h('td', {}, f.tasks ? progress(f.tasks, ended) : '—'),
      h('td', { class: 'opt' }, when(f.submittedAt)),
      h('td', { class: 'num opt' }, f.durationMs !== null && f.durationMs !== undefined ? dur(f.durationMs) : h('span', { class: 'zero' }, '—')),
      h('td', { class: 'opt' }, when(f.updatedAt)),
    );
    tr.addEventListener('click', (e) => {
      if (!(e.target instanceof HTMLAnchorElement) && !(e.target instanceof HTMLButtonElement) && !(e.target instanceof HTMLInputElement)) location.hash = `#/flows/${f.flowId}`;
    });
    return tr;
  }
  function render() {
    const filtered = [status && `${status} `, key && `with idempotency key "${key}" `, meta && `with metadata ${meta} `].filter(Boolean).join('');
    if (!flows.length)
      tbody.replaceChildren(
        h(
          'tr',
          {},
          h(
            'td',
            { colspan: 9 },
            h(
              'div',
              { class: 'empty' },
              h('strong', {}, filtered ? 'No matching flows' : 'No flows yet'),
              filtered ? `No flows ${filtered}among the recent ones.` : 'Submit one with POST /v1/flows or `jetflow submit`.',
            ),
          ),
        ),
      );
    else tbody.replaceChildren(...flows.map(row));
    for (const id of [...selected]) if (!flows.some((f) => f.flowId === id)) selected.delete(id);
    all.checked = flows.length > 0 && flows.every((f) => selected.has(f.flowId));
    bulk.hidden = selected.size === 0;
    selCount.textContent = `${selected.size} selected`;
    cancelBtn.relabel();
    cancelBtn.disabled = running().length === 0;
    flashed.clear();
    more.hidden = !cursor;
  }
  async function bulkCancel() {
    const ids = running().map((f) => f.flowId);
    const r = await eachLimited(ids, (id) => api(`/v1/flows/${encodeURIComponent(id)}/cancel`, { method: 'POST', body: JSON.stringify({ reason: 'cancelled from the dashboard (bulk)' }) }));
    const ok = r.filter((x) => x.ok).length;
    const ended = r.filter((x) => !x.ok && x.err.status === 409).length;
    const bad = r.length - ok - ended;
    toast(`Cancelling ${ok} of ${ids.length} flows${ended ? `; ${ended} had already ended` : ''}${bad ? `; ${bad} failed` : ''}`, bad > 0);
    selected.clear();
    void load();
  }
  const query = (extra) => {
    const q = new URLSearchParams(extra);
    if (status) q.set('status', status);
    if (key) q.set('idempotencyKey', key);
    if (meta) q.set('metadata', meta);
    return q;
  };
  async function load(older = false) {
    try {
      const q = query({ limit: '50' });
      if (older && cursor) q.set('cursor', cursor);
      const r = await api(`/v1/flows?${q}`);
      if (older) {
        const have = new Set(flows.map((f) => f.flowId));
        flows = flows.concat(r.flows.filter((f) => !have.has(f.flowId)));
      } else {
        // Keep what was loaded beyond the first page.
        const fresh = new Set(r.flows.map((f) => f.flowId));
        flows = r.flows.concat(flows.slice(50).filter((f) => !fresh.has(f.flowId)));
      }
      if (older || cursor === null) cursor = r.nextCursor;
      render();
    } catch (err) {
      if (err.status === 400) tbody.replaceChildren(h('tr', {}, h('td', { colspan: 9 }, h('div', { class: 'empty' }, h('strong', {}, 'Bad search'), err.message))));
      else if (err.status !== 401) panel.replaceChildren(failure('flows', err));
    }
  }
  async function loadChart() {
    try {
      const r = await api(`/v1/flows?${query({ limit: '200' })}`);
      const next = throughputChart(r.flows);
      chart.replaceWith(next);
      chart = next;
    } catch {
      /* the table says what went wrong */
    }
  }
  // Under load every flow sends events: reload the page of flows at most every 1.5 s.
  let pending = 0;
  const refreshSoon = () => {
    if (!pending)
      pending = setTimeout(() => {
        pending = 0;
        void load();
      }, 1_500);
  };
  const off = onEvent((ev) => {
    const f = flows.find((x) => x.flowId === ev.flowId);
    if (f) {
      // An end comes with the reloaded row (its tasks and its callback together), never from the event
      // alone: the row's task counts lag the event, and "succeeded" beside running tasks would be wrong.
      if (ev.status && !FINAL.includes(ev.status) && ev.status !== f.status) f.status = ev.status;
      const n = ev.task ? ev.task.split(',').length : 0;
      if (f.tasks && f.status === 'running' && n) {
        if (ev.type === 'task.succeeded') {
          f.tasks.succeeded += n;
          f.tasks.running = Math.max(0, f.tasks.running - n);
        }
        if (ev.type === 'task.failed') {
          f.tasks.failed += n;
          f.tasks.running = Math.max(0, f.tasks.running - n);
        }
      }
      flashed.add(f.flowId);
      if (!status || f.status === status) render();
    }
    refreshSoon();
  });
  void load();
  void loadChart();
  const chartTimer = setInterval(loadChart, 5_000);
  return () => {
    off();
    clearTimeout(pending);
    clearInterval(chartTimer);
  };
}

// ------------------------------------------------------------------ one flow: waterfall

function niceStep(span) {
  const raw = span / 6;
  const p = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) || p * 10;
}

function waterfall(t) {
  const t0 = t.submittedAt;
  let end = t.finishedAt || t.now;
  for (const st of t.stages) for (const k of st.tasks) end = Math.max(end, k.finishedAt || 0);
  const span = Math.max(end - t0, 1);
  const x = (ms) => `${Math.max(0, Math.min(100, ((ms - t0) / span) * 100))}%`;
  const step = niceStep(span);
  const ticks = (withLabels) => {
    const out = [];
    for (let v = 0; v <= span + 0.5; v += step) {
      const tk = h('div', { class: 'tick' }, withLabels ? h('span', {}, v === 0 ? '0' : dur(v)) : null);
      tk.style.left = `${(v / span) * 100}%`;
      out.push(tk);
    }
    return out;
  };
  const rows = [h('div', { class: 'wf-row wf-axis' }, h('div', { class: 'wf-label sub' }, 'since submission'), h('div', { class: 'wf-track' }, ticks(true)))];
  for (const st of t.stages) {
    rows.push(
      h(
        'div',
        { class: 'wf-row wf-stage' },
        h('div', { class: 'wf-label' }, st.name, h('span', { class: 'policy' }, st.onFailure === 'fail_flow' ? '· fails the flow' : '· continues on failure')),
        h('div', { class: 'wf-track' }),
      ),
    );
    for (const k of st.tasks) {
      const track = h('div', { class: 'wf-track' }, ticks(false));
      const begin = k.startedAt || k.dispatchedAt;
      const stop = k.finishedAt || (k.status === 'dispatched' ? t.now : null);
      if (k.dispatchedAt && k.startedAt && k.startedAt > k.dispatchedAt) {
        const q = h('div', { class: 'bar queue', title: `queued ${dur(k.startedAt - k.dispatchedAt)}` });
        q.style.left = x(k.dispatchedAt);
        q.style.width = `calc(${x(k.startedAt)} - ${x(k.dispatchedAt)})`;
        track.append(q);
      }
      if (begin && stop) {
        const tip = [
          `${k.name}: ${k.status}`,
          k.durationMs !== null ? `ran ${dur(k.durationMs)}` : null,
          `attempts ${k.attempts}`,
          k.worker ? `worker ${k.worker}` : null,
          k.error ? `${k.error.code}: ${k.error.message}` : null,
        ]
          .filter(Boolean)
          .join('\n');
        const bar = h('div', { class: `bar task ${k.status}`, title: tip, dataset: { task: k.name } });
        bar.style.left = x(begin);
        bar.style.width = `calc(${x(stop)} - ${x(begin)})`;
        const label = h(
          'span',
          { class: 'bar-label' },
          [
            k.durationMs !== null ? dur(k.durationMs) : k.status === 'dispatched' ? 'running…' : '',
            k.attempts > 1 ? ` · ${k.attempts} attempts` : '',
            k.error ? ` · ${k.error.code}` : '',
          ].join(''),
        );
        label.style.left = x(stop);
        track.append(bar, label);
      }
      rows.push(
        h(
          'div',
          { class: 'wf-row' },
          h('div', { class: 'wf-label' }, chip(k.status), h('span', { class: 'name' }, k.name), k.attempts > 1 ? h('span', { class: 'att' }, `×${k.attempts}`) : null),
          track,
        ),
      );
    }
  }
  const legend = h(
    'div',
    { class: 'legend' },
    ...[
      ['#cbd5e1', 'queued'],
      ['var(--ok-bar)', 'succeeded'],
      ['var(--run-bar)', 'running'],
      ['var(--bad-bar)', 'failed'],
      ['var(--warn-bar)', 'timed out'],
    ].map(([c, l]) => {
      const i = h('i');
      i.style.background = c;
      return h('span', {}, i, l);
    }),
    h('span', { class: 'spacer' }),
    h('span', {}, `axis: ${dur(span)} from submission`),
  );
  return h('div', {}, h('div', { class: 'waterfall' }, rows), legend);
}

function callbackFact(cb, ended) {
  if (!cb) return h('span', { class: 'zero' }, 'none');
  if (!ended) return h('span', { class: 'zero' }, 'sent when the flow ends');
  // The label says "Callback": the chip needs only the state.
  const c = h('span', { class: `chip cb ${cb.status}`, dataset: { callback: cb.status } }, CALLBACK_LABEL[cb.status] || cb.status);
  const more = [cb.attempts ? `${cb.attempts} attempt${cb.attempts === 1 ? '' : 's'}` : null, cb.lastError || null].filter(Boolean).join(' · ');
  return h('div', { class: 'chips wrap' }, c, more ? h('span', { class: 'sub' }, more) : null);
}

/** Every failed attempt of each task (the state keeps only the last error) and each callback attempt. */
function attemptsPanel(a) {
  if (!a) return null;
  const tasks = Object.entries(a.tasks || {});
  if (!tasks.length && !(a.callback || []).length) return null;
  const line = (x, label) =>
    h('li', { dataset: { attempt: String(x.attempt) } }, h('span', { class: 'att-n' }, x.attempt ? `#${x.attempt}` : '#?'), when(x.at), label, h('span', { class: 'att-msg' }, x.message));
  const groups = tasks.map(([name, list]) =>
    h(
      'div',
      { class: 'att-group', dataset: { task: name } },
      h('h3', { class: 'mono' }, name, h('span', { class: 'sub' }, ` · ${list.length} failed attempt${list.length === 1 ? '' : 's'}`)),
      h(
        'ol',
        { class: 'att-list' },
        list.map((x) =>
          line(x, h('span', { class: 'chips' }, chip(x.code, 'failed'), chip(x.outcome === 'retrying' ? 'retried' : 'final', x.outcome === 'retrying' ? 'retrying plain' : 'failed plain'))),
        ),
      ),
    ),
  );
  if ((a.callback || []).length) {
    groups.push(
      h(
        'div',
        { class: 'att-group', dataset: { task: 'callback' } },
        h('h3', {}, 'Callback deliveries'),
        h(
          'ol',
          { class: 'att-list' },
          a.callback.map((x) => line(x, chip(CALLBACK_LABEL[x.outcome] || x.outcome, x.outcome))),
        ),
      ),
    );
  }
  return h(
    'div',
    { class: 'panel', id: 'attempts' },
    h('div', { class: 'panel-head' }, h('h2', {}, 'Attempt history'), h('span', { class: 'sub' }, `from the flow's events${a.truncated ? ' (the oldest shown; more exist)' : ''}`)),
    h('div', { class: 'panel-body att' }, groups),
  );
}

function flowPage(id) {
  const body = h('div', {}, h('div', { class: 'panel' }, h('div', { class: 'empty' }, 'Loading…')));
  main.replaceChildren(h('div', { class: 'page-head' }, h('a', { href: '#/flows' }, '← Flows')), body);
  let t = null;
  let showJson = false;
  let json = null;
  let attempts = null;

  function render() {
    const traceCell = t.traceUrl
      ? h('a', { href: t.traceUrl, target: '_blank', rel: 'noopener', id: 'trace-link' }, 'Open in Jaeger ↗')
      : t.traceId
        ? mono(t.traceId.slice(0, 16) + '…', t.traceId)
        : h('span', { class: 'zero' }, 'not traced');
    const duration = t.finishedAt ? dur(t.finishedAt - t.submittedAt) : `${dur(t.now - t.submittedAt)} so far`;
    const actions = h(
      'div',
      { class: 'filters' },
      t.status === 'running' && json ? h('button', { class: 'btn secondary', id: 'pause-flow', onclick: () => pause(!json.paused) }, json.paused ? 'Resume flow' : 'Pause flow') : null,
      t.status === 'running' ? h('button', { class: 'btn danger', onclick: cancel }, 'Cancel flow') : null,
      h('button', { class: 'btn secondary', onclick: toggleJson }, showJson ? 'Hide JSON' : 'JSON'),
    );
    const parts = [
      h(
        'div',
        { class: 'page-head' },
        h('h1', { class: 'mono' }, t.flowId),
        copyButton(t.flowId),
        chip(t.status),
        json?.paused && !t.finishedAt ? chip('paused', 'partial') : null,
        t.finishedAt ? callbackChip(t.callback) : null,
        h('span', { class: 'spacer' }),
        actions,
      ),
      h(
        'div',
        { class: 'panel' },
        h(
          'div',
          { class: 'facts' },
          fact('Flow', `${t.flow} v${t.version}`),
          fact('Submitted', when(t.submittedAt)),
          json?.startAt ? fact('Starts at', h('span', { id: 'starts-at' }, new Date(json.startAt).toLocaleTimeString())) : null,
          fact('Priority', t.priority === undefined || t.priority === null ? '—' : String(t.priority)),
          fact('Duration', duration),
          fact('Deadline', new Date(t.deadlineAt).toLocaleTimeString()),
          fact('Ended', t.endReason || '—'),
          fact('Trace', traceCell),
          fact('Idempotency key', t.idempotencyKey ? mono(t.idempotencyKey) : '—'),
          fact('Callback', callbackFact(t.callback, !!t.finishedAt)),
        ),
      ),
      h('div', { class: 'panel', id: 'waterfall' }, h('div', { class: 'panel-head' }, h('h2', {}, 'Stages and tasks')), waterfall(t)),
    ];
    // Dispatched tasks no live worker serves (the worker registry): the flow waits for one.
    const waitingFor = t.status === 'running' && json && Array.isArray(json.waitingFor) ? json.waitingFor : [];
    if (waitingFor.length)
      parts.splice(
        2,
        0,
        h(
          'div',
          { class: 'panel', id: 'waiting-for' },
          h(
            'div',
            { class: 'panel-head' },
            h('h2', {}, 'Waiting for a worker'),
            h('span', { class: 'sub' }, 'no live worker serves these subjects; the tasks wait in the stream until one starts or the deadline passes'),
          ),
          h(
            'ul',
            { class: 'errors-list' },
            waitingFor.map((w) => h('li', { dataset: { waitingTask: w.task } }, mono(w.task), chip('no worker', 'partial'), h('span', { class: 'mono' }, w.subject))),
          ),
        ),
      );
    // Tasks a worker holds back for their concurrency or rate limit (dispatched, not running yet).
    const waitingLimit = json && !t.finishedAt ? json.stages.flatMap((st) => st.tasks).filter((x) => x.waitingForLimit) : [];
    if (waitingLimit.length)
      parts.splice(
        2,
        0,
        h(
          'div',
          { class: 'panel', id: 'waiting-for-limit' },
          h('div', { class: 'panel-head' }, h('h2', {}, 'Waiting for a limit'), h('span', { class: 'sub' }, 'taken by a worker, held back until a slot of its limit frees')),
          h(
            'ul',
            { class: 'errors-list' },
            waitingLimit.map(({ name, waitingForLimit: w }) =>
              h(
                'li',
                { dataset: { waitingLimit: name } },
                mono(name),
                chip('waiting', 'dispatched'),
                h('span', {}, w.kind === 'rate' ? `rate limit ${w.limit}/s per ` : `concurrency limit ${w.limit} at once per `),
                mono(w.key),
                when(w.since),
              ),
            ),
          ),
        ),
      );
    // Tasks waiting for a signal, and the signals the flow has received (taken by a task or kept).
    const waitingSignal = json && !t.finishedAt ? json.stages.flatMap((st) => st.tasks).filter((x) => x.waitingForSignal) : [];
    const signals = json?.signals ?? [];
    if (waitingSignal.length || signals.length)
      parts.splice(
        2,
        0,
        h(
          'div',
          { class: 'panel', id: 'signals' },
          h(
            'div',
            { class: 'panel-head' },
            h('h2', {}, 'Signals'),
            h('span', { class: 'sub' }, 'POST /v1/flows/{id}/signals/{name} or jetflow signal ID NAME; the payload is the task’s output'),
          ),
          h(
            'ul',
            { class: 'errors-list' },
            waitingSignal.map((x) =>
              h('li', { dataset: { waitingSignal: x.waitingForSignal } }, mono(x.name), chip('waiting', 'dispatched'), h('span', {}, 'for signal '), mono(x.waitingForSignal)),
            ),
            signals.map((x) =>
              h(
                'li',
                { dataset: { signal: x.id } },
                mono(x.name),
                chip(x.task ? 'taken' : 'kept', x.task ? 'succeeded' : 'plain'),
                h('span', {}, x.task ? `by ${x.task}` : 'no task took it yet'),
                when(x.receivedAt),
              ),
            ),
          ),
        ),
      );
    const history = attemptsPanel(attempts);
    if (history) parts.push(history);
    if (t.errors.length) {
      parts.push(
        h(
          'div',
          { class: 'panel' },
          h('div', { class: 'panel-head' }, h('h2', {}, `Errors (${t.errors.length})`)),
          h(
            'ul',
            { class: 'errors-list' },
            t.errors.map((e) => h('li', {}, mono(e.task), chip(e.code, 'failed'), h('span', {}, e.message))),
          ),
        ),
      );
    }
    const meta = Object.entries(t.metadata || {});
    if (meta.length)
      parts.push(
        h(
          'div',
          { class: 'panel' },
          h('div', { class: 'panel-head' }, h('h2', {}, 'Metadata')),
          h(
            'div',
            { class: 'panel-body' },
            h(
              'dl',
              { class: 'kv' },
              meta.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]),
            ),
          ),
        ),
      );
    if (showJson && json)
      parts.push(
        h(
          'div',
          { class: 'panel' },
          h('div', { class: 'panel-head' }, h('h2', {}, 'GET /v1/flows/' + t.flowId)),
          h('div', { class: 'panel-body' }, h('pre', {}, JSON.stringify(json, null, 2))),
        ),
      );
    body.replaceChildren(...parts);
  }
  const fact = (label, value) => h('div', { class: 'fact' }, h('label', {}, label), h('div', {}, value));

  async function load() {
    try {
      t = await api(`/v1/flows/${encodeURIComponent(id)}/timeline`);
      // The view also says which tasks wait for a worker or a signal, whether it is paused and when a scheduled one starts: read until it ends.
      if (showJson || t.status === 'running' || t.status === 'scheduled') json = await api(`/v1/flows/${encodeURIComponent(id)}`);
      render();
    } catch (err) {
      if (err.status === 404 && !t)
        body.replaceChildren(
          h(
            'div',
            { class: 'panel' },
            h('div', { class: 'empty' }, h('strong', {}, 'Flow not found'), 'It may not have started yet, it expired from the flows bucket, or it belongs to another tenant.'),
          ),
        );
      else if (err.status !== 401) body.replaceChildren(failure('the flow', err));
    }
  }
  async function toggleJson() {
    showJson = !showJson;
    await load();
  }
  async function cancel() {
    try {
      await api(`/v1/flows/${encodeURIComponent(id)}/cancel`, { method: 'POST', body: JSON.stringify({ reason: 'cancelled from the dashboard' }) });
      toast('Cancellation requested');
    } catch (err) {
      toast(err.message, true);
    }
  }
  async function pause(paused) {
    try {
      await api(`/v1/flows/${encodeURIComponent(id)}/${paused ? 'pause' : 'resume'}`, {
        method: 'POST',
        ...(paused ? { body: JSON.stringify({ reason: 'paused from the dashboard' }) } : {}),
      });
      toast(paused ? 'Pause requested' : 'Resume requested');
      setTimeout(() => void load(), 300);
    } catch (err) {
      toast(err.message, true);
    }
  }
  async function loadAttempts() {
    try {
      attempts = await api(`/v1/flows/${encodeURIComponent(id)}/attempts`);
      if (t) render();
    } catch {
      /* the history is an extra: the page works without it */
    }
  }
  let pending = 0;
  let pendingAttempts = 0;
  const off = onEvent((ev) => {
    if (ev.flowId !== id) return;
    if (/^(task\.retrying|task\.failed|callback\.)/.test(ev.type) && !pendingAttempts)
      pendingAttempts = setTimeout(() => {
        pendingAttempts = 0;
        void loadAttempts();
      }, 300);
    if (pending) return;
    pending = setTimeout(() => {
      pending = 0;
      void load();
    }, 150);
  });
  // While it runs, the bars grow with the clock; also covers events missed before the page opened.
  const tick = setInterval(() => {
    if (!t || t.status === 'running' || t.status === 'scheduled') void load();
  }, 1_000);
  void load();
  void loadAttempts();
  return () => {
    off();
    clearTimeout(pending);
    clearTimeout(pendingAttempts);
    clearInterval(tick);
  };
}

// ------------------------------------------------------------------ dead letters

function deadLettersPage(params) {
  const src = params.get('source') || '';
  const open = new Set();
  const details = new Map();
  const selected = new Set();
  let items = [];
  const tbody = h('tbody');
  const select = h(
    'select',
    {
      id: 'dlq-source',
      onchange: (e) => {
        location.hash = e.target.value ? `#/deadletters?source=${e.target.value}` : '#/deadletters';
      },
    },
    [
      ['', 'All sources'],
      ['task', 'task'],
      ['ingest', 'ingest'],
      ['callback', 'callback'],
      ['result', 'result'],
    ].map(([v, l]) => h('option', { value: v, selected: v === src }, l)),
  );
  const chosen = () => items.filter((d) => selected.has(d.seq));
  const redriveBtn = armedButton(
    () => `Redrive selected (${chosen().length})`,
    () => `Confirm: redrive ${chosen().length}`,
    bulkRedrive,
  );
  redriveBtn.id = 'bulk-redrive';
  // Every dead letter of the chosen source, not only the listed ones (POST /v1/deadletters:redrive).
  const matchBtn = matchingButton({
    id: 'redrive-matching',
    label: 'Redrive all matching…',
    path: '/v1/deadletters:redrive',
    noun: 'dead letter',
    verb: 'redrive',
    doneKey: 'redriven',
    alreadyKey: 'alreadyRedriven',
    doneLabel: 'Redriven',
    alreadyLabel: 'already redriven',
    body: () => ({ filter: src ? { source: src } : {} }),
    after: () => {
      void load();
      void refreshDlqCount();
    },
  });
  const selCount = h('span', { class: 'sub' });
  const bulk = h(
    'div',
    { class: 'bulk', hidden: true },
    selCount,
    redriveBtn,
    h(
      'button',
      {
        class: 'btn secondary small',
        onclick: () => {
          selected.clear();
          render();
        },
      },
      'Clear selection',
    ),
  );
  const all = h('input', {
    type: 'checkbox',
    'aria-label': 'Select all listed dead letters',
    onchange: (e) => {
      for (const d of items) e.target.checked ? selected.add(d.seq) : selected.delete(d.seq);
      render();
    },
  });
  const panel = h(
    'div',
    { class: 'panel' },
    h(
      'table',
      { class: 'dlq' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          h('th', { class: 'sel' }, all),
          h('th', { class: 'num' }, 'Seq'),
          h('th', { class: 'opt' }, 'When'),
          h('th', {}, h('span', { class: 'wide' }, 'Source · code'), h('span', { class: 'narrow' }, 'Source · code · reason')),
          h('th', { class: 'opt' }, 'Original subject'),
          h('th', { class: 'opt' }, 'Reason'),
          h('th', { class: 'num opt' }, 'Attempts'),
          h('th', { class: 'opt' }, 'Flow'),
          h('th', { class: 'act' }),
        ),
      ),
      tbody,
    ),
  );
  main.replaceChildren(
    h(
      'div',
      { class: 'page-head' },
      h('h1', {}, 'Dead letters'),
      h('span', { class: 'sub' }, 'messages that could not be processed; redrive sends one back to its original subject'),
      h('span', { class: 'spacer' }),
      matchBtn,
      select,
    ),
    h('div', { class: 'page-head', hidden: true }, bulk),
    panel,
  );
  const bulkHead = bulk.parentElement;

  function render() {
    for (const s of [...selected]) if (!items.some((d) => d.seq === s)) selected.delete(s);
    bulkHead.hidden = bulk.hidden = selected.size === 0;
    selCount.textContent = `${selected.size} selected`;
    redriveBtn.relabel();
    all.checked = items.length > 0 && items.every((d) => selected.has(d.seq));
    if (!items.length) {
      tbody.replaceChildren(h('tr', {}, h('td', { colspan: 9 }, h('div', { class: 'empty' }, h('strong', {}, 'No dead letters'), 'Everything was processed.'))));
      return;
    }
    const rows = [];
    for (const d of items) {
      const box = h('input', {
        type: 'checkbox',
        'aria-label': `Select dead letter ${d.seq}`,
        checked: selected.has(d.seq),
        onchange: (e) => {
          if (e.target.checked) selected.add(d.seq);
          else selected.delete(d.seq);
          render();
        },
      });
      rows.push(
        h(
          'tr',
          { dataset: { seq: String(d.seq) } },
          h('td', { class: 'sel' }, box),
          h('td', { class: 'num mono' }, String(d.seq)),
          h('td', { class: 'nowrap opt' }, when(d.time)),
          h('td', {}, h('div', { class: 'chips' }, chip(d.source, 'src plain'), chip(d.code, 'failed')), h('div', { class: 'reason-inline narrow', title: d.reason }, d.reason || '')),
          // max-width holds on a block, not on a table cell: the clipped text sits in a div.
          h('td', { class: 'opt' }, h('div', { class: 'mono clip', title: d.originalSubject }, d.originalSubject)),
          h('td', { class: 'opt' }, h('div', { class: 'reason clip', title: d.reason }, d.reason || '—')),
          h('td', { class: 'num opt' }, d.attempts ?? '—'),
          h('td', { class: 'opt' }, d.flowId ? h('a', { class: 'mono', href: `#/flows/${d.flowId}`, title: d.flowId }, d.flowId) : h('span', { class: 'zero' }, '—')),
          h(
            'td',
            { class: 'act' },
            h(
              'div',
              { class: 'actions' },
              h('button', { class: 'btn secondary small', onclick: () => toggle(d.seq) }, open.has(d.seq) ? 'Hide' : 'Details'),
              h('button', { class: 'btn small', dataset: { action: 'redrive' }, onclick: (e) => redrive(d, e.target) }, 'Redrive'),
            ),
          ),
        ),
      );
      if (open.has(d.seq)) {
        const det = details.get(d.seq);
        // The wrapper has no width of its own, so long header or body lines scroll inside it instead of widening the table.
        rows.push(
          h(
            'tr',
            { class: 'detail' },
            h(
              'td',
              { colspan: 9 },
              h(
                'div',
                { class: 'detail-wrap' },
                det
                  ? h(
                      'div',
                      { class: 'detail-grid' },
                      h(
                        'div',
                        {},
                        h('h2', {}, 'Headers'),
                        h(
                          'pre',
                          {},
                          Object.entries(det.headers)
                            .map(([k, v]) => `${k}: ${v.join(', ')}`)
                            .join('\n'),
                        ),
                      ),
                      h(
                        'div',
                        {},
                        h('h2', {}, `Body (${det.body.encoding}, ${bytes(det.size)})`),
                        h('pre', {}, det.body.encoding === 'json' ? JSON.stringify(det.body.value, null, 2) : String(det.body.value)),
                      ),
                    )
                  : 'Loading…',
              ),
            ),
          ),
        );
      }
    }
    tbody.replaceChildren(...rows);
  }
  async function toggle(seq) {
    if (open.has(seq)) open.delete(seq);
    else {
      open.add(seq);
      if (!details.has(seq))
        api(`/v1/deadletters/${seq}`).then(
          (d) => {
            details.set(seq, d);
            render();
          },
          (err) => toast(err.message, true),
        );
    }
    render();
  }
  async function redrive(d, button) {
    button.disabled = true;
    button.textContent = 'Redriving…';
    try {
      const r = await api(`/v1/deadletters/${d.seq}/redrive`, { method: 'POST' });
      toast(`Redriven #${d.seq} → ${r.subject}${r.duplicate ? ' (already redriven)' : ''}`);
      items = items.filter((x) => x.seq !== d.seq);
      render();
      void refreshDlqCount();
    } catch (err) {
      toast(`Redrive of #${d.seq} failed: ${err.message}`, true);
      button.disabled = false;
      button.textContent = 'Redrive';
    }
  }
  async function bulkRedrive() {
    const list = chosen();
    const r = await eachLimited(list, (d) => api(`/v1/deadletters/${d.seq}/redrive`, { method: 'POST' }));
    const done = new Set(list.filter((_, i) => r[i].ok).map((d) => d.seq));
    const failed = list.length - done.size;
    toast(`Redriven ${done.size} of ${list.length}${failed ? `; ${failed} failed: ${r.find((x) => !x.ok).err.message}` : ''}`, failed > 0);
    items = items.filter((x) => !done.has(x.seq));
    for (const s of done) selected.delete(s);
    render();
    void refreshDlqCount();
  }
  async function load() {
    try {
      const q = new URLSearchParams({ limit: '100' });
      if (src) q.set('source', src);
      const r = await api(`/v1/deadletters?${q}`);
      items = r.deadLetters;
      render();
    } catch (err) {
      if (err.status !== 401) panel.replaceChildren(failure('dead letters', err));
    }
  }
  void load();
  const timer = setInterval(load, 5_000);
  return () => clearInterval(timer);
}

// ------------------------------------------------------------------ consumers and their pulling workers

/** A task subject; its common prefix is dropped on narrow screens. */
function subjectLabel(subject) {
  const prefix = 'jetflow.task.';
  return subject.startsWith(prefix) ? [h('span', { class: 'wide' }, prefix), subject.slice(prefix.length)] : subject;
}

function consumersPage() {
  const cards = h('div', { class: 'cards' });
  const instances = h('tbody');
  const served = h('tbody');
  const registryStamp = h('span', { class: 'sub' });
  const th = (label, cls) => h('th', { class: cls }, label);
  const registryPanel = h(
    'div',
    { class: 'panel', id: 'registry' },
    h(
      'div',
      { class: 'panel-head' },
      h('h2', {}, 'Worker instances'),
      h('span', { class: 'sub' }, 'from the worker registry: each worker renews its entry every few seconds; stale after 3 missed renewals, gone 30 s after the last'),
      h('span', { class: 'spacer' }),
      registryStamp,
    ),
    h(
      'table',
      {},
      h('thead', {}, h('tr', {}, th('Worker'), th('Service', 'opt'), th('Host · pid', 'opt'), th('Busy / slots', 'num'), th('Status'), th('Seen', 'opt'), th('Subjects'))),
      instances,
    ),
    h('table', { id: 'registry-subjects' }, h('thead', {}, h('tr', {}, th('Task subject'), th('Live instances', 'num'), th('Busy / slots', 'num'), th('Queued', 'num'))), served),
  );
  const workers = h('tbody');
  const tbody = h('tbody');
  const stamp = h('span', { class: 'sub' });
  const workersPanel = h(
    'div',
    { class: 'panel', id: 'workers' },
    h(
      'div',
      { class: 'panel-head' },
      h('h2', {}, 'Task subjects and their pulling workers'),
      h('span', { class: 'sub' }, 'what JetStream knows of the workers: each idle one holds a pull request open (waiting pulls); a busy one holds unacknowledged tasks.'),
    ),
    h(
      'table',
      {},
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          h('th', {}, 'Task subject'),
          h('th', { class: 'num' }, 'Pulling workers'),
          h('th', { class: 'num' }, 'In flight'),
          h('th', { class: 'num' }, 'Queued'),
          h('th', { class: 'num opt' }, 'Redelivered'),
          h('th', { class: 'num' }, 'Served'),
        ),
      ),
      workers,
    ),
  );
  const panel = h(
    'div',
    { class: 'panel' },
    h(
      'table',
      {},
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          h('th', {}, 'Consumer'),
          h('th', { class: 'opt' }, 'Stream'),
          h('th', { class: 'num' }, 'Pending'),
          h('th', { class: 'num' }, 'Ack pending'),
          h('th', { class: 'num opt' }, 'Redelivered'),
          h('th', { class: 'num' }, 'Waiting pulls'),
          h('th', { class: 'num opt' }, 'Delivered'),
          h('th', { class: 'num' }, 'Throughput'),
        ),
      ),
      tbody,
    ),
  );
  main.replaceChildren(
    h(
      'div',
      { class: 'page-head' },
      h('h1', {}, 'Consumers and their pulling workers'),
      h('span', { class: 'sub' }, 'JetStream lag and load, refreshed every 2 s'),
      h('span', { class: 'spacer' }),
      stamp,
    ),
    cards,
    registryPanel,
    workersPanel,
    panel,
  );

  async function loadRegistry() {
    let r;
    try {
      r = await api('/v1/workers');
    } catch (err) {
      if (err.status !== 401) instances.replaceChildren(h('tr', {}, h('td', { colspan: 7 }, failure('workers', err))));
      return;
    }
    registryStamp.textContent = `read ${new Date(r.sampledAt).toLocaleTimeString()}`;
    const liveChip = (w) => chip(w.status, w.status === 'live' ? 'succeeded' : 'partial');
    instances.replaceChildren(
      ...(r.workers.length
        ? r.workers.map((w) =>
            h(
              'tr',
              { dataset: { registryWorker: w.id, status: w.status } },
              h('td', {}, h('div', { class: 'mono' }, w.name), h('div', { class: 'sub mono reg-id' }, w.id)),
              h('td', { class: 'opt' }, w.service, h('div', { class: 'sub' }, w.version)),
              h('td', { class: 'sub opt' }, `${w.host} · ${w.pid}`),
              h('td', { class: 'num' }, `${num(w.busy)} / ${num(w.concurrency)}`),
              h('td', {}, liveChip(w)),
              h('td', { class: 'opt' }, when(w.heartbeatAt)),
              h(
                'td',
                {},
                w.subjects.map((s) => h('div', { class: 'mono', dataset: { subject: s } }, subjectLabel(s))),
              ),
            ),
          )
        : [h('tr', {}, h('td', { colspan: 7 }, h('div', { class: 'empty' }, 'No worker has announced itself.')))]),
    );
    served.replaceChildren(
      ...r.subjects.map((s) =>
        h(
          'tr',
          { dataset: { registrySubject: s.subject } },
          h('td', {}, h('div', { class: 'mono' }, subjectLabel(s.subject))),
          h('td', { class: 'num' }, s.instances > 0 ? h('strong', {}, num(s.instances)) : h('span', { class: 'hot', title: 'no live worker serves this subject: its tasks wait' }, '0')),
          h('td', { class: 'num' }, `${num(s.busy)} / ${num(s.slots)}`),
          h('td', { class: 'num' }, s.pending === null ? '—' : h('span', { class: s.pending === 0 ? 'zero' : s.instances === 0 ? 'hot' : null }, num(s.pending))),
        ),
      ),
    );
  }

  async function load() {
    let r;
    try {
      r = await api('/v1/consumers');
    } catch (err) {
      if (err.status !== 401) panel.replaceChildren(failure('consumers', err));
      return;
    }
    stamp.textContent = `sampled ${new Date(r.sampledAt).toLocaleTimeString()}`;
    cards.replaceChildren(
      ...r.streams.map((s) =>
        h(
          'div',
          { class: 'card' },
          h('label', {}, s.name.replace('JETFLOW_', '').toLowerCase()),
          h('div', { class: 'big' }, num(s.messages)),
          h('div', { class: 'sub' }, `messages · ${bytes(s.bytes)} · ${s.consumers} consumer${s.consumers === 1 ? '' : 's'}`),
        ),
      ),
    );
    const z = (n, hot) => h('span', { class: n === 0 ? 'zero' : hot ? 'hot' : null }, num(n));
    const rate = (c) => (c.deliveredPerSec === null || c.deliveredPerSec === undefined ? h('span', { class: 'zero' }, 'measuring…') : `${num(c.deliveredPerSec)}/s`);
    const tasks = r.consumers.filter((c) => c.stream === 'JETFLOW_TASKS');
    workers.replaceChildren(
      ...(tasks.length
        ? tasks.map((c) =>
            h(
              'tr',
              { dataset: { workerSubject: c.filterSubject || c.name } },
              h('td', {}, h('div', { class: 'mono' }, subjectLabel(c.filterSubject || c.name)), h('div', { class: 'sub mono opt' }, c.name)),
              h(
                'td',
                { class: 'num' },
                c.numWaiting > 0
                  ? h('strong', {}, num(c.numWaiting))
                  : h('span', { class: c.numAckPending > 0 ? 'zero' : 'hot', title: c.numAckPending > 0 ? 'all busy' : 'nobody is pulling this subject' }, '0'),
              ),
              h('td', { class: 'num' }, z(c.numAckPending)),
              h('td', { class: 'num' }, z(c.numPending, c.numPending > 1000)),
              h('td', { class: 'num opt' }, z(c.numRedelivered, true)),
              h('td', { class: 'num' }, rate(c)),
            ),
          )
        : [h('tr', {}, h('td', { colspan: 6 }, h('div', { class: 'empty' }, 'No task consumers yet.')))]),
    );
    const maxPending = Math.max(1, ...r.consumers.map((c) => c.numPending));
    tbody.replaceChildren(
      ...r.consumers.map((c) => {
        const bar = h('div', { class: 'pbar' }, h('i', { class: c.numPending > 0 ? 'bad' : 'ok' }));
        bar.firstChild.style.width = `${(c.numPending / maxPending) * 100}%`;
        return h(
          'tr',
          { dataset: { consumer: c.name } },
          h('td', {}, h('div', { class: 'mono' }, c.name), c.filterSubject ? h('div', { class: 'sub mono' }, c.filterSubject) : null),
          h('td', { class: 'sub opt' }, c.stream),
          h('td', { class: 'num' }, h('div', { class: 'lag' }, bar, z(c.numPending, c.numPending > 1000))),
          h('td', { class: 'num' }, z(c.numAckPending), c.maxAckPending ? h('span', { class: 'zero' }, ` / ${num(c.maxAckPending)}`) : null),
          h('td', { class: 'num opt' }, z(c.numRedelivered, true)),
          h('td', { class: 'num' }, z(c.numWaiting)),
          h('td', { class: 'num opt' }, num(c.delivered)),
          h('td', { class: 'num' }, rate(c)),
        );
      }),
    );
  }
  void load();
  void loadRegistry();
  const timer = setInterval(() => {
    void load();
    void loadRegistry();
  }, 2_000);
  return () => clearInterval(timer);
}

// ------------------------------------------------------------------ boot

if (apiKey) start();
else loginPage();

// ------------------------------------------------------------------ schedules

/** The tenant's cron schedules (GET /v1/schedules), refreshed every 5 s, with pause and resume. */
function schedulesPage() {
  const tbody = h('tbody');
  const cols = ['Id', 'Cron', 'Time zone', 'Flow', 'Overlap', 'State', 'Next fire', 'Fired', 'Skipped', 'Missed', 'Last flow', ''];
  const panel = h(
    'div',
    { class: 'panel', id: 'schedules' },
    h('table', {}, h('thead', {}, h('tr', {}, ...cols.map((c, i) => h('th', { class: i >= 7 && i <= 9 ? 'num' : i === 11 ? 'act' : undefined }, c)))), tbody),
  );
  main.replaceChildren(
    h(
      'div',
      { class: 'page-head' },
      h('h1', {}, 'Schedules'),
      h(
        'span',
        { class: 'sub' },
        'each fire time submits a flow (create with POST /v1/schedules or jetflow schedules create); skipped: the previous flow still ran; missed: given up while down',
      ),
    ),
    panel,
  );
  let stopped = false;
  async function load() {
    try {
      const r = await api('/v1/schedules');
      if (!stopped) render(r.schedules);
    } catch (err) {
      if (!stopped) tbody.replaceChildren(h('tr', {}, h('td', { colspan: cols.length }, failure('schedules', err))));
    }
  }
  async function act(s, verb) {
    try {
      await api(`/v1/schedules/${encodeURIComponent(s.id)}/${verb}`, { method: 'POST' });
      toast(`${s.id}: ${verb === 'pause' ? 'paused' : 'resumed'}`);
    } catch (err) {
      toast(err.message, true);
    }
    void load();
  }
  function render(items) {
    if (!items.length) {
      tbody.replaceChildren(h('tr', {}, h('td', { colspan: cols.length }, h('div', { class: 'empty' }, h('strong', {}, 'No schedules'), 'POST /v1/schedules creates one.'))));
      return;
    }
    tbody.replaceChildren(
      ...items.map((s) =>
        h(
          'tr',
          { dataset: { id: s.id } },
          h('td', {}, mono(s.id)),
          h('td', {}, mono(s.cron)),
          h('td', {}, s.timezone),
          h('td', {}, s.submission?.flow ?? '—'),
          h('td', {}, s.overlap),
          h('td', {}, chip(s.paused ? 'paused' : 'active', s.paused ? 'partial' : 'succeeded')),
          h('td', { class: 'nowrap' }, s.nextFireAt ? new Date(s.nextFireAt).toLocaleString() : '—'),
          h('td', { class: 'num' }, num(s.fired)),
          h('td', { class: 'num' }, num(s.skipped)),
          h('td', { class: 'num' }, num(s.missed)),
          h('td', {}, s.lastFlowId ? h('a', { class: 'mono', href: `#/flows/${s.lastFlowId}` }, s.lastFlowId) : '—'),
          h('td', { class: 'act' }, h('button', { class: 'ghost small', onclick: () => act(s, s.paused ? 'resume' : 'pause') }, s.paused ? 'Resume' : 'Pause')),
        ),
      ),
    );
  }
  void load();
  const timer = setInterval(load, 5_000);
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
