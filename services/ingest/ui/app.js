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
  do { n /= 1024; i++; } while (n >= 1024 && i < u.length - 1);
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
  if (res.status === 401 && key === apiKey) { logout('Your API key was refused. Enter it again.'); throw new ApiError(401, body); }
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
  source.addEventListener('open', () => { live.classList.add('on'); live.lastChild.textContent = 'live'; });
  source.addEventListener('error', () => { live.classList.remove('on'); live.lastChild.textContent = 'reconnecting'; });
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
  } catch { /* shown on the page itself */ }
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
  const form = h('form', {
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
  }, input, h('button', { class: 'btn', type: 'submit' }, 'Connect'), err);
  main.replaceChildren(h('div', { class: 'login' },
    h('h1', {}, 'Connect to Jetflow'),
    h('p', {}, 'Enter an API key. It is kept in this browser only and identifies your tenant.'),
    form));
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
  else cleanup = flowsPage(params);
}
window.addEventListener('hashchange', route);

function failure(where, err) {
  return h('div', { class: 'panel' }, h('div', { class: 'empty' }, h('strong', {}, `Could not load ${where}`), err.message));
}

// ------------------------------------------------------------------ flows list

const STATUSES = ['running', 'succeeded', 'partial', 'failed', 'cancelled'];

function progress(t) {
  const pct = (n) => `${t.total ? (n / t.total) * 100 : 0}%`;
  const bar = h('div', { class: 'pbar' }, h('i', { class: 'ok' }), h('i', { class: 'bad' }), h('i', { class: 'run' }));
  const [ok, bad, run] = bar.children;
  ok.style.width = pct(t.succeeded);
  bad.style.width = pct(t.failed);
  run.style.width = pct(t.running);
  return h('div', { class: 'progress', title: `${t.succeeded} succeeded, ${t.failed} failed, ${t.running} running of ${t.total}` }, bar, h('span', { class: 'ptext' }, `${t.succeeded}/${t.total}`));
}

function flowsPage(params) {
  const status = params.get('status') || '';
  let flows = [];
  let cursor = null;
  const flashed = new Set();
  const tbody = h('tbody');
  const more = h('button', { class: 'btn secondary', hidden: true, onclick: () => load(true) }, 'Load older');
  const filters = h('div', { class: 'filters' },
    [['', 'All'], ...STATUSES.map((s) => [s, s[0].toUpperCase() + s.slice(1)])].map(([s, label]) =>
      h('button', { class: `filter${s === status ? ' on' : ''}`, onclick: () => { location.hash = s ? `#/flows?status=${s}` : '#/flows'; } }, label)));
  const table = h('table', {},
    h('thead', {}, h('tr', {}, h('th', {}, 'Status'), h('th', {}, 'Flow id'), h('th', {}, 'Flow'), h('th', {}, 'Tasks'), h('th', {}, 'Submitted'), h('th', { class: 'num' }, 'Duration'), h('th', {}, 'Updated'))),
    tbody);
  const panel = h('div', { class: 'panel' }, table);
  main.replaceChildren(
    h('div', { class: 'page-head' }, h('h1', {}, 'Flows'), h('span', { class: 'sub' }, 'most recently changed first, live'), h('span', { class: 'spacer' }), filters),
    panel,
    h('div', { class: 'page-head', style: null }, h('span', { class: 'spacer' }), more));

  function row(f) {
    const tr = h('tr', { dataset: { flowId: f.flowId }, class: flashed.has(f.flowId) ? 'flash' : null },
      h('td', {}, chip(f.status)),
      h('td', {}, h('a', { href: `#/flows/${f.flowId}`, class: 'mono' }, f.flowId), copyButton(f.flowId)),
      h('td', {}, f.flow),
      h('td', {}, f.tasks ? progress(f.tasks) : '—'),
      h('td', {}, when(f.submittedAt)),
      h('td', { class: 'num' }, f.durationMs !== null && f.durationMs !== undefined ? dur(f.durationMs) : h('span', { class: 'zero' }, '—')),
      h('td', {}, when(f.updatedAt)));
    tr.addEventListener('click', (e) => { if (!(e.target instanceof HTMLAnchorElement) && !(e.target instanceof HTMLButtonElement)) location.hash = `#/flows/${f.flowId}`; });
    return tr;
  }
  function render() {
    if (!flows.length) tbody.replaceChildren(h('tr', {}, h('td', { colspan: 7 }, h('div', { class: 'empty' }, h('strong', {}, 'No flows yet'), status ? `No ${status} flows among the recent ones.` : 'Submit one with POST /v1/flows or `jetflow submit`.'))));
    else tbody.replaceChildren(...flows.map(row));
    flashed.clear();
    more.hidden = !cursor;
  }
  async function load(older = false) {
    try {
      const q = new URLSearchParams({ limit: '50' });
      if (status) q.set('status', status);
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
      if (err.status !== 401) panel.replaceChildren(failure('flows', err));
    }
  }
  // Under load every flow sends events: reload the page of flows at most every 1.5 s.
  let pending = 0;
  const refreshSoon = () => { if (!pending) pending = setTimeout(() => { pending = 0; void load(); }, 1_500); };
  const off = onEvent((ev) => {
    const f = flows.find((x) => x.flowId === ev.flowId);
    if (f) {
      if (ev.status && ev.status !== f.status) f.status = ev.status;
      if (ev.type === 'task.succeeded' && f.tasks) { f.tasks.succeeded++; f.tasks.running = Math.max(0, f.tasks.running - 1); }
      if (ev.type === 'task.failed' && f.tasks) { f.tasks.failed++; f.tasks.running = Math.max(0, f.tasks.running - 1); }
      flashed.add(f.flowId);
      if (!status || f.status === status) render();
    }
    refreshSoon();
  });
  void load();
  return () => { off(); clearTimeout(pending); };
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
    rows.push(h('div', { class: 'wf-row wf-stage' }, h('div', { class: 'wf-label' }, st.name, h('span', { class: 'policy' }, st.onFailure === 'fail_flow' ? '· fails the flow' : '· continues on failure')), h('div', { class: 'wf-track' })));
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
        const tip = [`${k.name}: ${k.status}`, k.durationMs !== null ? `ran ${dur(k.durationMs)}` : null, `attempts ${k.attempts}`, k.worker ? `worker ${k.worker}` : null, k.error ? `${k.error.code}: ${k.error.message}` : null].filter(Boolean).join('\n');
        const bar = h('div', { class: `bar task ${k.status}`, title: tip, dataset: { task: k.name } });
        bar.style.left = x(begin);
        bar.style.width = `calc(${x(stop)} - ${x(begin)})`;
        const label = h('span', { class: 'bar-label' }, [k.durationMs !== null ? dur(k.durationMs) : k.status === 'dispatched' ? 'running…' : '', k.attempts > 1 ? ` · ${k.attempts} attempts` : '', k.error ? ` · ${k.error.code}` : ''].join(''));
        label.style.left = x(stop);
        track.append(bar, label);
      }
      rows.push(h('div', { class: 'wf-row' },
        h('div', { class: 'wf-label' }, chip(k.status), h('span', { class: 'name' }, k.name), k.attempts > 1 ? h('span', { class: 'att' }, `×${k.attempts}`) : null),
        track));
    }
  }
  const legend = h('div', { class: 'legend' },
    ...[['#cbd5e1', 'queued'], ['var(--ok-bar)', 'succeeded'], ['var(--run-bar)', 'running'], ['var(--bad-bar)', 'failed'], ['var(--warn-bar)', 'timed out']].map(([c, l]) => {
      const i = h('i');
      i.style.background = c;
      return h('span', {}, i, l);
    }),
    h('span', { class: 'spacer' }),
    h('span', {}, `axis: ${dur(span)} from submission`));
  return h('div', {}, h('div', { class: 'waterfall' }, rows), legend);
}

function flowPage(id) {
  const body = h('div', {}, h('div', { class: 'panel' }, h('div', { class: 'empty' }, 'Loading…')));
  main.replaceChildren(h('div', { class: 'page-head' }, h('a', { href: '#/flows' }, '← Flows')), body);
  let t = null;
  let showJson = false;
  let json = null;

  function render() {
    const traceCell = t.traceUrl ? h('a', { href: t.traceUrl, target: '_blank', rel: 'noopener', id: 'trace-link' }, 'Open in Jaeger ↗') : t.traceId ? mono(t.traceId.slice(0, 16) + '…', t.traceId) : h('span', { class: 'zero' }, 'not traced');
    const duration = t.finishedAt ? dur(t.finishedAt - t.submittedAt) : `${dur(t.now - t.submittedAt)} so far`;
    const actions = h('div', { class: 'filters' },
      t.status === 'running' ? h('button', { class: 'btn danger', onclick: cancel }, 'Cancel flow') : null,
      h('button', { class: 'btn secondary', onclick: toggleJson }, showJson ? 'Hide JSON' : 'JSON'));
    const parts = [
      h('div', { class: 'page-head' }, h('h1', { class: 'mono' }, t.flowId), copyButton(t.flowId), chip(t.status), h('span', { class: 'spacer' }), actions),
      h('div', { class: 'panel' }, h('div', { class: 'facts' },
        fact('Flow', `${t.flow} v${t.version}`),
        fact('Submitted', when(t.submittedAt)),
        fact('Duration', duration),
        fact('Deadline', new Date(t.deadlineAt).toLocaleTimeString()),
        fact('Ended', t.endReason || '—'),
        fact('Trace', traceCell),
        fact('Idempotency key', t.idempotencyKey ? mono(t.idempotencyKey) : '—'))),
      h('div', { class: 'panel', id: 'waterfall' }, h('div', { class: 'panel-head' }, h('h2', {}, 'Stages and tasks')), waterfall(t)),
    ];
    if (t.errors.length) {
      parts.push(h('div', { class: 'panel' }, h('div', { class: 'panel-head' }, h('h2', {}, `Errors (${t.errors.length})`)),
        h('ul', { class: 'errors-list' }, t.errors.map((e) => h('li', {}, mono(e.task), chip(e.code, 'failed'), h('span', {}, e.message))))));
    }
    const meta = Object.entries(t.metadata || {});
    if (meta.length) parts.push(h('div', { class: 'panel' }, h('div', { class: 'panel-head' }, h('h2', {}, 'Metadata')), h('div', { class: 'panel-body' }, h('dl', { class: 'kv' }, meta.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])))));
    if (showJson && json) parts.push(h('div', { class: 'panel' }, h('div', { class: 'panel-head' }, h('h2', {}, 'GET /v1/flows/' + t.flowId)), h('div', { class: 'panel-body' }, h('pre', {}, JSON.stringify(json, null, 2)))));
    body.replaceChildren(...parts);
  }
  const fact = (label, value) => h('div', { class: 'fact' }, h('label', {}, label), h('div', {}, value));

  async function load() {
    try {
      t = await api(`/v1/flows/${encodeURIComponent(id)}/timeline`);
      if (showJson) json = await api(`/v1/flows/${encodeURIComponent(id)}`);
      render();
    } catch (err) {
      if (err.status === 404 && !t) body.replaceChildren(h('div', { class: 'panel' }, h('div', { class: 'empty' }, h('strong', {}, 'Flow not found'), 'It may not have started yet, it expired from the flows bucket, or it belongs to another tenant.')));
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
  let pending = 0;
  const off = onEvent((ev) => {
    if (ev.flowId !== id || pending) return;
    pending = setTimeout(() => { pending = 0; void load(); }, 150);
  });
  // While it runs, the bars grow with the clock; also covers events missed before the page opened.
  const tick = setInterval(() => { if (!t || t.status === 'running') void load(); }, 1_000);
  void load();
  return () => { off(); clearTimeout(pending); clearInterval(tick); };
}

// ------------------------------------------------------------------ dead letters

function deadLettersPage(params) {
  const src = params.get('source') || '';
  const open = new Set();
  const details = new Map();
  let items = [];
  const tbody = h('tbody');
  const select = h('select', { id: 'dlq-source', onchange: (e) => { location.hash = e.target.value ? `#/deadletters?source=${e.target.value}` : '#/deadletters'; } },
    [['', 'All sources'], ['task', 'task'], ['ingest', 'ingest'], ['callback', 'callback'], ['result', 'result']].map(([v, l]) => h('option', { value: v, selected: v === src }, l)));
  const panel = h('div', { class: 'panel' }, h('table', {},
    h('thead', {}, h('tr', {}, h('th', { class: 'num' }, 'Seq'), h('th', {}, 'When'), h('th', {}, 'Source · code'), h('th', {}, 'Original subject'), h('th', {}, 'Reason'), h('th', { class: 'num' }, 'Attempts'), h('th', {}, 'Flow'), h('th', {}))),
    tbody));
  main.replaceChildren(
    h('div', { class: 'page-head' }, h('h1', {}, 'Dead letters'), h('span', { class: 'sub' }, 'messages that could not be processed; redrive sends one back to its original subject'), h('span', { class: 'spacer' }), select),
    panel);

  function render() {
    if (!items.length) {
      tbody.replaceChildren(h('tr', {}, h('td', { colspan: 8 }, h('div', { class: 'empty' }, h('strong', {}, 'No dead letters'), 'Everything was processed.'))));
      return;
    }
    const rows = [];
    for (const d of items) {
      rows.push(h('tr', { dataset: { seq: String(d.seq) } },
        h('td', { class: 'num mono' }, String(d.seq)),
        h('td', { class: 'nowrap' }, when(d.time)),
        h('td', {}, h('div', { class: 'chips' }, chip(d.source, 'src plain'), chip(d.code, 'failed'))),
        h('td', { class: 'mono clip', title: d.originalSubject }, d.originalSubject),
        h('td', { class: 'reason clip', title: d.reason }, d.reason || '—'),
        h('td', { class: 'num' }, d.attempts ?? '—'),
        h('td', {}, d.flowId ? h('a', { class: 'mono', href: `#/flows/${d.flowId}` }, d.flowId) : h('span', { class: 'zero' }, '—')),
        h('td', {}, h('div', { class: 'actions' },
          h('button', { class: 'btn secondary small', onclick: () => toggle(d.seq) }, open.has(d.seq) ? 'Hide' : 'Details'),
          h('button', { class: 'btn small', dataset: { action: 'redrive' }, onclick: (e) => redrive(d, e.target) }, 'Redrive')))));
      if (open.has(d.seq)) {
        const det = details.get(d.seq);
        rows.push(h('tr', { class: 'detail' }, h('td', { colspan: 8 }, det
          ? h('div', { class: 'detail-grid' },
            h('div', {}, h('h2', {}, 'Headers'), h('pre', {}, Object.entries(det.headers).map(([k, v]) => `${k}: ${v.join(', ')}`).join('\n'))),
            h('div', {}, h('h2', {}, `Body (${det.body.encoding}, ${bytes(det.size)})`), h('pre', {}, det.body.encoding === 'json' ? JSON.stringify(det.body.value, null, 2) : String(det.body.value))))
          : 'Loading…')));
      }
    }
    tbody.replaceChildren(...rows);
  }
  async function toggle(seq) {
    if (open.has(seq)) open.delete(seq);
    else {
      open.add(seq);
      if (!details.has(seq)) api(`/v1/deadletters/${seq}`).then((d) => { details.set(seq, d); render(); }, (err) => toast(err.message, true));
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

// ------------------------------------------------------------------ consumers

function consumersPage() {
  const cards = h('div', { class: 'cards' });
  const tbody = h('tbody');
  const stamp = h('span', { class: 'sub' });
  const panel = h('div', { class: 'panel' }, h('table', {},
    h('thead', {}, h('tr', {}, h('th', {}, 'Consumer'), h('th', {}, 'Stream'), h('th', { class: 'num' }, 'Pending'), h('th', { class: 'num' }, 'Ack pending'), h('th', { class: 'num' }, 'Redelivered'), h('th', { class: 'num' }, 'Waiting pulls'), h('th', { class: 'num' }, 'Delivered'), h('th', { class: 'num' }, 'Throughput'))),
    tbody));
  main.replaceChildren(h('div', { class: 'page-head' }, h('h1', {}, 'Consumers'), h('span', { class: 'sub' }, 'JetStream lag and load, refreshed every 2 s'), h('span', { class: 'spacer' }), stamp), cards, panel);

  async function load() {
    let r;
    try {
      r = await api('/v1/consumers');
    } catch (err) {
      if (err.status !== 401) panel.replaceChildren(failure('consumers', err));
      return;
    }
    stamp.textContent = `sampled ${new Date(r.sampledAt).toLocaleTimeString()}`;
    cards.replaceChildren(...r.streams.map((s) => h('div', { class: 'card' }, h('label', {}, s.name.replace('JETFLOW_', '').toLowerCase()), h('div', { class: 'big' }, num(s.messages)), h('div', { class: 'sub' }, `messages · ${bytes(s.bytes)} · ${s.consumers} consumer${s.consumers === 1 ? '' : 's'}`))));
    const maxPending = Math.max(1, ...r.consumers.map((c) => c.numPending));
    tbody.replaceChildren(...r.consumers.map((c) => {
      const bar = h('div', { class: 'pbar' }, h('i', { class: c.numPending > 0 ? 'bad' : 'ok' }));
      bar.firstChild.style.width = `${(c.numPending / maxPending) * 100}%`;
      const z = (n, hot) => h('span', { class: n === 0 ? 'zero' : hot ? 'hot' : null }, num(n));
      return h('tr', { dataset: { consumer: c.name } },
        h('td', {}, h('div', { class: 'mono' }, c.name), c.filterSubject ? h('div', { class: 'sub mono' }, c.filterSubject) : null),
        h('td', { class: 'sub' }, c.stream),
        h('td', { class: 'num' }, h('div', { class: 'lag' }, bar, z(c.numPending, c.numPending > 1000))),
        h('td', { class: 'num' }, z(c.numAckPending), c.maxAckPending ? h('span', { class: 'zero' }, ` / ${num(c.maxAckPending)}`) : null),
        h('td', { class: 'num' }, z(c.numRedelivered, true)),
        h('td', { class: 'num' }, z(c.numWaiting)),
        h('td', { class: 'num' }, num(c.delivered)),
        h('td', { class: 'num' }, c.deliveredPerSec === null ? h('span', { class: 'zero' }, 'measuring…') : `${num(c.deliveredPerSec)}/s`));
    }));
  }
  void load();
  const timer = setInterval(load, 2_000);
  return () => clearInterval(timer);
}

// ------------------------------------------------------------------ boot

if (apiKey) start();
else loginPage();
